"""The six figures: the right data, written as PDF + PNG, synthetic and diverged runs marked."""

import numpy as np
import pytest

import fake_results as fr
from hessdepth.h5io import OutputError
from hessdepth.plots import make_figure, save_figure
from hessdepth.training_plots import lower_norm_fraction, read_gradnorms
from hessdepth.summary import (
    CURVATURE_BY_MODEL_COLUMNS,
    aggregate_by_model,
    aggregate_curvature,
    summarize,
    summarize_curvature,
)
from hessdepth.tables import write_csv, write_summary

PARAMS = {
    "density": {"sigma2": 1e-5, "grid_points": 801, "grid_range": [-20, 60]},
    "stats": {"confidence": 0.95, "method": "bootstrap", "seed": 0},
}


def texts(fig) -> str:
    """All text of a figure: suptitle, titles, labels, legends, annotations."""
    return " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and callable(a.get_text)))


def check_saved(fig, tmp_path, name):
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    save_figure(fig, pdf, png)
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def summary_file(tmp_path, runs, density=PARAMS["density"]) -> str:
    """summary.h5, as the summary rule writes it, of runs = [(arch, depth, seed, step, tail, diverged)]."""
    files = {"lanczos": [], "moments": [], "checkpoints": []}
    for arch, depth, seed, step, tail, diverged in runs:
        ident = fr.identity(arch, depth, seed, step)
        d = tmp_path / f"{arch}{depth}_s{seed}_t{step}"
        d.mkdir(parents=True)
        eigs = fr.spectrum(150, tail, seed)
        fr.write_lanczos(d / "lanczos.h5", eigs, ident, probes=2, m=20, diverged=diverged)
        fr.write_moments(d / "moments.h5", eigs, ident, probes=8, diverged=diverged)
        fr.write_checkpoint(d / "checkpoint.h5", ident, 0.5, diverged=diverged)
        for key, name in (("lanczos", "lanczos.h5"), ("moments", "moments.h5"), ("checkpoints", "checkpoint.h5")):
            files[key].append(str(d / name))
    summary = summarize(**files, density=density, stats=PARAMS["stats"])
    by_model = aggregate_by_model(summary.rows, PARAMS["stats"]["confidence"])
    out = tmp_path / "summary.h5"
    write_summary(out, tmp_path / "summary.csv", tmp_path / "by_model.csv", summary, by_model, {"density": density})
    return str(out)


def test_fig1_fraction_and_figure(tmp_path):
    simple = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    resnet = simple * np.array([0.5, 2, 0.5, 2, 1, 0.1, 3, 3])  # 3 of 8 strictly lower
    for arch, norms in (("resnet", resnet), ("simple", simple)):
        fr.write_gradnorms(tmp_path / f"{arch}.h5", fr.identity(arch, 80, step=10000), norms)
    assert lower_norm_fraction(read_gradnorms(tmp_path / "resnet.h5"), read_gradnorms(tmp_path / "simple.h5")) == 3 / 8
    inputs = {"resnet": str(tmp_path / "resnet.h5"), "simple": str(tmp_path / "simple.h5")}
    fig = make_figure("fig1_gradnorms", inputs, {**PARAMS, "depth": 80, "step": 10000})
    assert "37.5% of variables lower in the ResNet" in texts(fig)
    assert "ResNet-80" in texts(fig) and "synthetic data" in fig.get_suptitle()
    check_saved(fig, tmp_path, "fig1")
    with pytest.raises(OutputError, match="step"):
        make_figure("fig1_gradnorms", inputs, {**PARAMS, "depth": 80, "step": 20000})
    fr.write_gradnorms(tmp_path / "other.h5", fr.identity("simple", 80, step=10000), simple[:4])
    with pytest.raises(ValueError, match="different variables"):
        make_figure("fig1_gradnorms", {**inputs, "simple": str(tmp_path / "other.h5")}, PARAMS)


def test_fig2_densities_by_depth_mark_diverged(tmp_path):
    runs = [("simple", d, s, 10, tail, False) for d, tail in ((8, 2.0), (14, 5.0), (20, 9.0)) for s in (0, 1)]
    runs.append(("simple", 26, 0, 10, 9.0, True))
    fig = make_figure("fig2_depth_densities", {"summary": summary_file(tmp_path, runs)}, PARAMS)
    text = texts(fig)
    assert "simple-8, mean of 2 seeds" in text and "simple-26: diverged (not plotted)" in text
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3 and ax.get_yscale() == "log"
    assert "synthetic data" in fig.get_suptitle()
    check_saved(fig, tmp_path, "fig2")


def test_fig3_moments_vs_depth(tmp_path):
    runs = [
        (a, d, 0, 10, tail * (3 if a == "simple" else 1), a == "simple" and d == 20)
        for a in ("resnet", "simple")
        for d, tail in ((8, 1.0), (14, 2.0), (20, 3.0))
    ]
    fig = make_figure("fig3_moments", {"summary": summary_file(tmp_path, runs)}, PARAMS)
    skew_ax, kurt_ax, outliers_ax = fig.axes
    assert skew_ax.get_xlabel() == "depth (layers)" and kurt_ax.get_ylabel().startswith("kurtosis")
    assert outliers_ax.get_ylabel() == "effective outliers, P / kurtosis"
    # seeds average on the log scale, so each model's plotted outliers times its kurtosis is its P
    kurtosis, outliers = ([c.lines[0].get_ydata() for c in ax.containers] for ax in fig.axes[1:])
    params = [1000 * d for d in (8, 14, 20)] * 2 + [1000 * d for d in (8, 14)] * 2  # ResNets, then simple-20 left out
    np.testing.assert_allclose(np.concatenate(kurtosis) * np.concatenate(outliers), params)
    assert "diverged" in texts(fig) and "Hutchinson moments" in texts(fig)
    check_saved(fig, tmp_path, "fig3")


def test_fig4_two_steps(tmp_path):
    runs = [
        (a, 14, 0, step, tail * (3 if a == "simple" else 1), False)
        for step, tail in ((10, 1.0), (20, 2.0))
        for a in ("resnet", "simple")
    ]
    fig = make_figure("fig4_densities_steps", {"summary": summary_file(tmp_path, runs)}, PARAMS)
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("step 10", "step 20")
    assert "ResNet-14 vs simple-14" in fig.get_suptitle()
    check_saved(fig, tmp_path, "fig4")


def test_fig5_curves_seeds_and_divergence(tmp_path):
    paths = []
    for arch, loss in (("resnet", 0.01), ("simple", 0.2)):
        for seed in (0, 1):
            path = tmp_path / f"{arch}_{seed}.h5"
            fr.write_curve(
                path,
                fr.identity(arch, 20, seed, synthetic=False),
                loss * (1 + seed),
                diverged=arch == "simple" and seed == 1,
            )
            paths.append(str(path))
    fig = make_figure("fig5_curves", {"curves": paths}, {**PARAMS, "depth": 20})
    text = texts(fig)
    assert "ResNet-20 (2 seeds, mean bold)" in text and "seed 1 diverged" in text
    assert "learning-rate change" in text and "(n = 3)" in fig.get_suptitle()
    assert "synthetic" not in fig.get_suptitle()
    check_saved(fig, tmp_path, "fig5")
    with pytest.raises(OutputError, match="depth"):
        make_figure("fig6_curves", {"curves": paths}, {**PARAMS, "depth": 80})


def _plotted_peaks(fig) -> list[tuple[int, int]]:
    """Per plotted density: (local maxima within 3 std of 0 above 1% of the peak, all local maxima
    above 1e-7 of it, as the log axis shows them); asserts unit mass."""
    out = []
    for line in fig.axes[0].get_lines():
        grid, dens = (np.asarray(a, dtype=float) for a in line.get_data())
        assert dens.sum() * (grid[1] - grid[0]) == pytest.approx(1, abs=0.01)
        inner = dens[1:-1]
        peaks = (inner > dens[:-2]) & (inner > dens[2:])
        bulk = peaks & (np.abs(grid[1:-1]) <= 3) & (inner > 1e-2 * dens.max())
        out.append((int(bulk.sum()), int((peaks & (inner > 1e-7 * dens.max())).sum())))
    return out


def test_fig2_plots_seed_averaged_densities_that_integrate_to_one_and_are_not_combs(tmp_path):
    runs = [("simple", d, s, 10, tail, False) for d, tail in ((8, 2.0), (14, 5.0)) for s in (0, 1, 2)]
    density = {**PARAMS["density"], "grid_points": 4001}
    smooth = {"summary": summary_file(tmp_path / "smooth", runs, {**density, "spacing_factor": 1.0})}
    smooth = make_figure("fig2_depth_densities", smooth, PARAMS)
    assert "Gaussian kernel s.d." in texts(smooth)
    assert all(bulk <= 2 and total <= 8 for bulk, total in _plotted_peaks(smooth))
    comb = make_figure("fig2_depth_densities", {"summary": summary_file(tmp_path / "comb", runs, density)}, PARAMS)
    assert any(bulk > 2 or total > 8 for bulk, total in _plotted_peaks(comb))


def test_fig3_axes_follow_the_statistics_scales():
    from hessdepth.spectrum_plots import moments_figure

    rows = []
    for arch, sign in (("resnet", 1), ("simple", -1)):
        for depth, k in ((8, 50.0), (14, 900.0)):
            row = dict(arch=arch, depth=depth, step=10, diverged=False, synthetic=False)
            for est in ("slq", "hutch"):
                for stat, value in (("skewness", sign * k / 10), ("kurtosis", k), ("outliers", 1e4 / k)):
                    row.update(
                        {f"{est}_{stat}": value, f"{est}_{stat}_lo": value * 0.9, f"{est}_{stat}_hi": value * 1.1}
                    )
            rows.append(row)
    scales = [ax.get_yscale() for ax in moments_figure(rows, 0.95).axes]
    assert scales == ["asinh", "log", "log"]
    positive = [{**r, "slq_skewness": abs(r["slq_skewness"]), "hutch_skewness": abs(r["hutch_skewness"])} for r in rows]
    assert moments_figure(positive, 0.95).axes[0].get_yscale() == "log"


def curvature_table(tmp_path, runs, kind) -> str:
    """summary_curvature_by_model.csv, as the curvature_summary rule writes it, from blocks.h5 (kind
    "blocks") or gauss_newton.h5 files for runs = [(arch, depth, seed, diverged)]: spectra of
    kurtosis about 10 but for the simple nets' stage 3 and G, whose few outliers dominate
    (kurtosis in the hundreds)."""
    paths = []
    for arch, depth, seed, diverged in runs:
        heavy = 30.0 if arch == "simple" else 1.0
        parts = (
            {"input": 1.0, "stage1": 1.0, "stage2": 1.0, "stage3": heavy, "classifier": 1.0}
            if kind == "blocks"
            else {"hessian": 1.0, "gauss_newton": heavy}
        )
        path = tmp_path / f"{kind}_{arch}{depth}_s{seed}.h5"
        fr.write_parts(
            path,
            fr.identity(arch, depth, seed),
            {p: fr.spectrum(2000, tail, seed + i) for i, (p, tail) in enumerate(parts.items())},
            diverged=diverged,
        )
        paths.append(str(path))
    rows = summarize_curvature(stats=PARAMS["stats"], **{kind: paths})
    out = tmp_path / "summary_curvature_by_model.csv"
    write_csv(out, aggregate_curvature(rows, PARAMS["stats"]["confidence"]), CURVATURE_BY_MODEL_COLUMNS)
    return str(out)


def test_fig7_block_moments_vs_depth(tmp_path):
    runs = [(a, d, s, a == "simple" and d == 20) for a in ("resnet", "simple") for d in (8, 14, 20) for s in (0, 1)]
    files = {"curvature": curvature_table(tmp_path, runs, "blocks")}
    fig = make_figure("fig7_blocks", files, {**PARAMS, "step": 10})
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [
        "ResNet nets, skewness",
        "simple nets, skewness",
        "ResNet nets, kurtosis",
        "simple nets, kurtosis",
    ]
    assert axes[2].get_yscale() == "log"  # simple stage 3 kurtosis is decades above the other blocks
    assert "classifier" in texts(fig) and "diverged" in texts(fig) and "step 10" in fig.get_suptitle()
    check_saved(fig, tmp_path, "fig7")
    with pytest.raises(OutputError, match="step"):
        make_figure("fig7_blocks", files, {**PARAMS, "step": 20})


def test_fig8_hessian_and_gauss_newton_of_the_deepest_pair(tmp_path):
    runs = [(a, 20, s, False) for a in ("resnet", "simple") for s in (0, 1)]
    files = {"curvature": curvature_table(tmp_path, runs, "gauss_newton")}
    fig = make_figure("fig8_gauss_newton", files, {**PARAMS, "depth": 20, "step": 10})
    skew_ax, kurt_ax = fig.axes
    assert [t.get_text() for t in kurt_ax.get_xticklabels()] == ["ResNet-20", "simple-20"]
    assert kurt_ax.get_yscale() == "log" and kurt_ax.get_ylabel().startswith("kurtosis")
    assert "Gauss-Newton part G" in texts(fig) and "Hessian H" in texts(fig)
    check_saved(fig, tmp_path, "fig8")
    with pytest.raises(OutputError, match="depth"):
        make_figure("fig8_gauss_newton", files, {**PARAMS, "depth": 44})


def test_figures_draw_the_runs_their_rule_names_from_the_summary_and_refuse_a_table_without_them(tmp_path):
    runs = [(a, 14, s, 10, 3.0 if a == "simple" else 1.0, False) for a in ("resnet", "simple") for s in (0, 1)]
    inputs = {"summary": summary_file(tmp_path, runs)}
    one_seed = [{"model": m, "seed": 0, "step": 10} for m in ("resnet14", "simple14")]
    fig = make_figure("fig4_densities_steps", inputs, {**PARAMS, "expect": {"summary": one_seed}})
    assert "mean of 2 seeds" not in texts(fig)  # the rule asked for seed 0 only
    with pytest.raises(OutputError, match=r"no row for \[\('simple14', 2, 10\)\]"):
        make_figure(
            "fig4_densities_steps", inputs, {**PARAMS, "expect": {"summary": [*one_seed, {**one_seed[1], "seed": 2}]}}
        )
    # the per-model table averages both seeds: a rule that asks for seed 0 alone gets no silent average
    with pytest.raises(OutputError, match="over the seeds the figure needs"):
        make_figure("fig3_moments", inputs, {**PARAMS, "expect": {"summary": one_seed}})
    both = [{**r, "seed": s} for r in one_seed for s in (0, 1)]
    assert make_figure("fig3_moments", inputs, {**PARAMS, "expect": {"summary": both}}).axes
