# What each figure reads (FIGURE_RUNS: the file kind and the runs, model, seed[, step]) and its
# settings; rules/figures.smk's one rule takes its inputs and params from here.

FIG = config["figures"]
DEEPEST = max(config["models"]["depths"])


def moments_runs(models=MODELS):
    return runs(models, [FIG["moments"]["step"]])


# Per figure and input name: the file kind and the runs (model, seed[, step]) it reads. A kind is
# a run's file (one per run: it must hold that run's identity) or a summary table (it must hold
# those runs, and the figure draws them from it): the densities and statistics come from the
# summary rules, never from the per-checkpoint Hessian files (hessdepth.plots.make_figure).
SUMMARY = table_file("summary.h5")
CURVATURE_BY_MODEL = table_file("summary_curvature_by_model.csv")
FIGURE_RUNS = {
    "fig1_gradnorms": lambda: {
        arch: (gradnorms_file, [(f"{arch}{FIG['gradnorms']['depth']}", SEEDS[0], FIG["gradnorms"]["step"])])
        for arch in ("resnet", "simple")
    },
    "fig2_depth_densities": lambda: {
        "summary": (
            SUMMARY,
            runs(
                model_ids(FIG["depth_densities"]["arch"], FIG["depth_densities"]["depths"]),
                [FIG["depth_densities"]["step"]],
            ),
        )
    },
    "fig3_moments": lambda: {"summary": (SUMMARY, moments_runs())},
    "fig4_densities_steps": lambda: {
        "summary": (SUMMARY, runs(both_archs(FIG["densities_steps"]["depth"]), FIG["densities_steps"]["steps"]))
    },
    "fig5_curves": lambda: {"curves": (curve_file, [(m, s) for m in both_archs(FIG["curves"][0]) for s in SEEDS])},
    "fig6_curves": lambda: {"curves": (curve_file, [(m, s) for m in both_archs(FIG["curves"][1]) for s in SEEDS])},
    "fig7_blocks": lambda: {"curvature": (CURVATURE_BY_MODEL, moments_runs())},
    "fig8_gauss_newton": lambda: {"curvature": (CURVATURE_BY_MODEL, moments_runs(both_archs(DEEPEST)))},
}


def figure_inputs(wildcards):
    return {
        name: kind if isinstance(kind, str) else [kind(*run) for run in read]
        for name, (kind, read) in FIGURE_RUNS[wildcards.figure]().items()
    }


def figure_expect(wildcards):
    """The model, seed (and step) each input file must hold, parallel to figure_inputs."""
    return {
        name: [identity.of_run(run) for run in read]
        for name, (_, read) in FIGURE_RUNS[wildcards.figure]().items()
    }


FIGURE_SETTINGS = {
    "fig1_gradnorms": FIG["gradnorms"],
    "fig5_curves": {"depth": FIG["curves"][0]},
    "fig6_curves": {"depth": FIG["curves"][1]},
    "fig7_blocks": FIG["moments"],
    "fig8_gauss_newton": {"depth": DEEPEST, **FIG["moments"]},
}
