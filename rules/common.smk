# Config validation, path helpers and input functions shared by every rule file.
import os
import sys
from pathlib import Path

import yaml

# The library, also when it is not pip-installed (e.g. `--sdm conda`): for this Snakefile, and
# through PYTHONPATH for every job's script (scripts/ import hessdepth and nothing else of ours).
LIB = f"{workflow.basedir}/lib"
sys.path.insert(0, LIB)
# (set, not read from the user, so no `envvars:` assertion: the lint's os.environ[...] rule is about reads)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [LIB, os.getenv("PYTHONPATH")])))
import hessdepth as hd
from hessdepth import identity, workflow as wf
from hessdepth.plots import figures_drawn

SCHEMA = yaml.safe_load(open(f"{workflow.basedir}/config/schema.yaml"))
config.update(wf.coerce_cli_strings(config, SCHEMA))  # --config key="{...}" arrives as strings
wf.check_config(config, SCHEMA)
if config["data"]["md5"]:  # either case is the same checksum: one spelling, so a case change reruns nothing
    config["data"]["md5"] = config["data"]["md5"].lower()

DATASET = config["dataset"]
DATA_SETTINGS = wf.data_settings(config)  # what data.h5 must be made from; training checks it
# Each run (preset) writes under its own name, so presets never overwrite each other's outputs.
RUN = wf.run_name(config["run"], workflow.overwrite_configfiles)
RESULTS = f"results/{RUN}"
FIGURES_DIR = f"figures/{RUN}"
LOGS = f"logs/{RUN}"
BENCHMARKS = f"benchmarks/{RUN}"
if not workflow.dryrun:  # a read-only or unwritable results folder stops the run before any job
    wf.check_writable([RESULTS, FIGURES_DIR, LOGS, BENCHMARKS])
# What a job's error message tells the user to run to rebuild a damaged or stale file: the run's
# --configfile and --config options.
wf.set_rebuild_command(
    workflow.overwrite_configfiles, wf.coerce_cli_strings(dict(workflow.config_settings.config), SCHEMA)
)
SEEDS = config["models"]["seeds"]
STEPS = sorted(config["train"]["checkpoints"])
MODELS = [hd.model_id(a, d) for a in config["models"]["archs"] for d in config["models"]["depths"]]
USE_GPU = config["device"] != "cpu"  # ask the scheduler for a GPU unless told to run on the CPU
CURVATURE = config["curvature"]  # optional stages: blocks of the Hessian, its Gauss-Newton part
CURVATURE_STEPS = sorted(CURVATURE["steps"] or STEPS)
FIGURES = figures_drawn(CURVATURE)  # the paper's six, and each curvature stage's (hessdepth.plots.FIGURES)


wildcard_constraints:
    model=r"(resnet|simple)\d+",
    seed=r"\d+",
    step=r"\d+",
    figure="|".join(FIGURES),


# --- paths: one place that names every intermediate -------------------------------------------
def download_file():
    return "results/downloads/cifar-10-python.tar.gz"  # shared by every run


def data_file():
    return f"{RESULTS}/data.h5"


def checkpoint_file(model, seed, step):
    return f"{RESULTS}/train/{model}/seed{seed}/step{step}.h5"


def snapshot_file(model, seed):
    return f"{RESULTS}/train/{model}/seed{seed}/snapshot.pt"  # not an output: a failed job keeps it


def curve_file(model, seed):
    return f"{RESULTS}/train/{model}/seed{seed}/curve.h5"


def lanczos_file(model, seed, step):
    return f"{RESULTS}/hessian/{model}/seed{seed}/step{step}/lanczos.h5"


def moments_file(model, seed, step):
    return f"{RESULTS}/hessian/{model}/seed{seed}/step{step}/moments.h5"


def blocks_file(model, seed, step):
    return f"{RESULTS}/hessian/{model}/seed{seed}/step{step}/blocks.h5"


def gauss_newton_file(model, seed, step):
    return f"{RESULTS}/hessian/{model}/seed{seed}/step{step}/gauss_newton.h5"


def gradnorms_file(model, seed, step):
    return f"{RESULTS}/gradnorms/{model}/seed{seed}/step{step}.h5"


def hessian_job_log(rule):
    """A per-checkpoint job's log: one per rule, model, seed and step."""
    return f"{LOGS}/{rule}/{{model}}_seed{{seed}}_step{{step}}.log"


def hessian_job_benchmark(rule):
    return f"{BENCHMARKS}/{rule}/{{model}}_seed{{seed}}_step{{step}}.tsv"


def table_file(name):
    """summary.csv, summary_curvature.csv, ...: the run's tables."""
    return f"{RESULTS}/{name}"


def figure_file(figure, ext):
    return f"{FIGURES_DIR}/{figure}.{ext}"


def results_doc_file():
    return f"{FIGURES_DIR}/results.md"


def runs(models=MODELS, steps=STEPS):
    """Every (model, seed, step) of the given models and steps, in one fixed order."""
    return [(m, s, t) for m in models for s in SEEDS for t in steps]


def figure_files(figure):
    return [figure_file(figure, "pdf"), figure_file(figure, "png")]


def curvature_tables():
    """The curvature table per run and per model, when a curvature stage is on."""
    if not (CURVATURE["blocks"] or CURVATURE["gauss_newton"]):
        return []
    return [table_file("summary_curvature.csv"), table_file("summary_curvature_by_model.csv")]


def all_targets():
    return [
        table_file("summary.csv"),
        *curvature_tables(),
        results_doc_file(),
        *[f for fig in FIGURES for f in figure_files(fig)],
    ]


# --- resources ------------------------------------------------------------------------------
# Runtime requests grow with the work: image-layer passes times a per-device cost, doubled, plus
# a fixed start-up allowance. The per-device costs are rough (hessdepth.workflow.config); sites
# adjust with --set-resources.
SECONDS_PER_IMAGE_LAYER = wf.SECONDS_PER_IMAGE_LAYER["gpu" if USE_GPU else "cpu"]


def runtime_minutes(image_layer_passes):
    return int(10 + 2 * image_layer_passes * SECONDS_PER_IMAGE_LAYER / 60)


def depth_of(wildcards):
    return hd.parse_model_id(wildcards.model)[1]


def hessian_samples(section):
    return config[section]["samples"] or int(wf.training_class_counts(config).sum())


# --- data -------------------------------------------------------------------------------------
def archive_input(wildcards):
    if DATASET == "synthetic":
        return []
    return config["data"]["archive"] or rules.download_cifar10.output[0]


# --- training ---------------------------------------------------------------------------------
def train_runtime(wildcards):
    t = config["train"]
    return runtime_minutes(t["steps"] * t["batch_size"] * depth_of(wildcards) * 1.2)


# --- Hessian jobs -----------------------------------------------------------------------------
# What defines each job's result (its params) and what only changes its speed (resources, so a
# change reruns nothing): hessdepth.workflow.settings
SETTINGS = wf.job_settings(config)
SPEED = wf.speed_resources(config)


def hvp_runtime(section, hvps_per_probe):
    def runtime(wildcards):
        s = config[section]
        per_probe = hvps_per_probe(s) * hessian_samples("hessian") * depth_of(wildcards)
        return runtime_minutes(3 * per_probe * s["probes"])

    return runtime


# --- figures ----------------------------------------------------------------------------------
def model_ids(arch, depths):
    return [hd.model_id(arch, d) for d in depths]


def both_archs(depth):
    return model_ids("resnet", [depth]) + model_ids("simple", [depth])


def caption_text(wildcards):
    return Path(f"{workflow.basedir}/report/captions/{wildcards.figure}.rst").read_text()
