"""What names a run, defined once: the checkpoint carries it, every file made from a checkpoint
copies it, every table keys its rows on it, and a job's path (its wildcards) names part of it.

A *net* is an architecture at a depth and width; a *run* is a net trained on a dataset with a
seed, seen at a step. The per-model tables average runs over seeds, so their rows are a run's
identity without the seed.
"""

from __future__ import annotations

NET = ("model", "arch", "depth", "width", "num_classes", "n_params")  # hessdepth.checkpoints.model_attrs
PATH = ("model", "seed", "step")  # what a per-checkpoint path names: the rules' wildcards
SAME_RUN = ("dataset", "model", "seed", "step")  # two files of these values describe one run
RUN = ("dataset", "synthetic", "model", "arch", "depth", "seed", "step", "n_params")  # a table row's key
OUTCOME = ("diverged", "train_loss", "train_acc")  # how the run ended at the checkpoint
COPIED = (*RUN, "width", *OUTCOME)  # what a per-checkpoint analysis copies from its checkpoint


def without_seed(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The per-model version of a per-run key tuple (runs averaged over seeds)."""
    return tuple(k for k in keys if k != "seed")


def of_path(wildcards) -> dict:
    """The model, seed and step a job's wildcards name: what its checkpoint must hold."""
    return of_run((wildcards.model, int(wildcards.seed), int(wildcards.step)))


def of_run(run) -> dict:
    """``(model, seed, step)`` as the identity a file of that run must hold."""
    return dict(zip(PATH, run))
