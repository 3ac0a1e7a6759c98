"""The figures: one registry (:data:`FIGURES`) that the rules, the captions and the tests read,
and :func:`make_figure`, which reads what one figure needs and draws it.

Figures are matplotlib ``Figure`` objects built without pyplot, so no display or global state is
involved; :func:`save_figure` writes one as PDF and PNG. Figures of synthetic data say so in their
title; diverged runs are drawn apart (dashed, crossed, or listed as "diverged (not plotted)"),
never as normal lines. The spectral figures draw from the summary tables only
(:mod:`hessdepth.spectrum_plots`); gradient norms and training curves from each run's own file
(:mod:`hessdepth.training_plots`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import matplotlib
from matplotlib.figure import Figure

from .atomic import atomic_path
from .h5io import OutputError, check_identity, open_checked, rebuild_hint
from .plot_style import STYLE
from .spectrum_plots import (
    blocks_figure,
    densities_steps_figure,
    depth_densities_figure,
    gauss_newton_figure,
    moments_figure,
)
from .tables import read_csv, read_summary
from .training_plots import curves_figure, gradnorms_figure, read_curve, read_gradnorms

TABLE_INPUTS = ("summary", "curvature")  # the summary tables; every other input is one run's file


def _paths(value) -> list[str]:
    return [value] if isinstance(value, (str, os.PathLike)) else list(value)


def _single(value, name: str) -> str:
    paths = _paths(value)
    if len(paths) != 1:
        raise ValueError(f"input '{name}' must be one file, got {len(paths)}")
    return paths[0]


def _run_key(run: dict) -> tuple:
    return str(run["model"]), int(run["seed"]), int(run["step"])


def select_runs(rows: Sequence[dict], runs: Sequence[dict] | None, table) -> list[int]:
    """Indices in ``rows`` of ``runs`` (model, seed, step each; None: every row), in their order;
    a run the table lacks is an error, so a figure never silently drops one."""
    if runs is None:
        return list(range(len(rows)))
    index = {_run_key(r): i for i, r in enumerate(rows)}
    missing = [k for k in map(_run_key, runs) if k not in index]
    if missing:
        raise OutputError(f"{table} has no row for {missing[:3]} (of {len(missing)} missing); {rebuild_hint(table)}")
    return [index[_run_key(r)] for r in runs]


def select_models(by_model: Sequence[dict], runs: Sequence[dict] | None, table) -> list[dict]:
    """The rows of a per-model table for the (model, step) pairs of ``runs`` (None: every row), each
    averaged over exactly the seeds ``runs`` name, so a figure draws what its rule asked for."""
    if runs is None:
        return list(by_model)
    seeds: dict[tuple, int] = {}
    for run in runs:
        key = (str(run["model"]), int(run["step"]))
        seeds[key] = seeds.get(key, 0) + 1
    index = {(r["model"], int(r["step"])): r for r in by_model}
    wrong = [k for k, n in seeds.items() if k not in index or index[k]["n_seeds"] + index[k]["n_diverged"] != n]
    if wrong:
        raise OutputError(
            f"{table} does not hold {wrong[:3]} over the seeds the figure needs ({sorted(seeds.values())[-1]}); "
            f"{rebuild_hint(table)}"
        )
    return [index[k] for k in seeds]


def _check_expected(runs: Sequence[dict], params: dict, keys: Sequence[str]) -> None:
    for key in keys:
        if params.get(key) is not None and any(r[key] != int(params[key]) for r in runs):
            raise OutputError(
                f"figure inputs have {key} {sorted({r[key] for r in runs})}, the rule asked for {params[key]}"
            )


def _check_identities(inputs: dict, expect: dict) -> None:
    """Every input file holds the model, seed (and step) that ``expect`` says its path stands for,
    so a file of another run put in a run's place is never drawn as that run."""
    for name, wanted in expect.items():
        paths = _paths(inputs[name])
        if len(paths) != len(wanted):
            raise ValueError(f"input '{name}': {len(paths)} files but {len(wanted)} expected identities")
        for path, want in zip(paths, wanted):
            with open_checked(path) as f:
                check_identity(path, f.attrs, want)


def _expected(params: dict, name: str) -> list[dict] | None:
    """The runs the rule says input ``name`` must hold (None: not said)."""
    return (params.get("expect") or {}).get(name)


# --- each figure from its inputs: (inputs, params, title suffix) -> Figure --------------------------
def _gradnorms(inputs: dict, params: dict, suffix: str) -> Figure:
    resnet = read_gradnorms(_single(inputs["resnet"], "resnet"))
    simple = read_gradnorms(_single(inputs["simple"], "simple"))
    _check_expected([resnet, simple], params, ("depth", "step"))
    return gradnorms_figure(resnet, simple, suffix)


def _densities(draw: Callable) -> Callable:
    def figure(inputs: dict, params: dict, suffix: str) -> Figure:
        table = _single(inputs["summary"], "summary")
        summary, _ = read_summary(table)
        chosen = select_runs(summary.rows, _expected(params, "summary"), table)
        return draw([(summary.rows[i], summary.density[i]) for i in chosen], summary.grid, suffix)

    return figure


def _moments(inputs: dict, params: dict, suffix: str) -> Figure:
    table = _single(inputs["summary"], "summary")
    by_model = select_models(read_summary(table)[1], _expected(params, "summary"), table)
    return moments_figure(by_model, params["stats"]["confidence"], suffix)


def _curves(inputs: dict, params: dict, suffix: str) -> Figure:
    curves = [read_curve(p) for p in _paths(inputs["curves"])]
    _check_expected(curves, params, ("depth",))
    return curves_figure(curves, suffix)


def _curvature(draw: Callable) -> Callable:
    def figure(inputs: dict, params: dict, suffix: str) -> Figure:
        table = _single(inputs["curvature"], "curvature")
        by_model = select_models(read_csv(table), _expected(params, "curvature"), table)
        _check_expected(by_model, params, ("depth", "step"))
        return draw(by_model, params["stats"]["confidence"], suffix)

    return figure


@dataclass(frozen=True)
class FigureSpec:
    """One figure: what it shows, the inputs its rule gives it (by name), how it is drawn, and the
    curvature stage it needs (None: every run draws it). Its caption is report/captions/{name}.rst."""

    shows: str
    inputs: tuple[str, ...]
    draw: Callable[[dict, dict, str], Figure]
    stage: str | None = None


FIGURES: dict[str, FigureSpec] = {
    "fig1_gradnorms": FigureSpec("per-variable gradient norms, ResNet vs simple", ("resnet", "simple"), _gradnorms),
    "fig2_depth_densities": FigureSpec(
        "eigenvalue densities of one architecture at growing depth", ("summary",), _densities(depth_densities_figure)
    ),
    "fig3_moments": FigureSpec("skewness, kurtosis and P / kurtosis against depth", ("summary",), _moments),
    "fig4_densities_steps": FigureSpec(
        "densities of a ResNet and a simple net at two steps", ("summary",), _densities(densities_steps_figure)
    ),
    "fig5_curves": FigureSpec("training curves of a shallow pair", ("curves",), _curves),
    "fig6_curves": FigureSpec("training curves of a deep pair", ("curves",), _curves),
    "fig7_blocks": FigureSpec(
        "skewness and kurtosis of each block of the Hessian", ("curvature",), _curvature(blocks_figure), "blocks"
    ),
    "fig8_gauss_newton": FigureSpec(
        "the Hessian and its Gauss-Newton part", ("curvature",), _curvature(gauss_newton_figure), "gauss_newton"
    ),
}


def figures_drawn(curvature: dict) -> list[str]:
    """The figures a run draws: the paper's six, and each curvature stage's figure when ``curvature``
    (the config's section) turns that stage on."""
    return [name for name, spec in FIGURES.items() if spec.stage is None or curvature.get(spec.stage)]


def make_figure(name: str, inputs: dict, params: dict) -> Figure:
    """Figure ``name`` (a key of :data:`FIGURES`) from its input files.

    ``inputs``: the names its :class:`FigureSpec` lists: gradient-norm files (fig1 ``resnet`` and
    ``simple``), curve files (fig5 and fig6 ``curves``), summary.h5 (fig2-4 ``summary``: densities
    and the per-model table), summary_curvature_by_model.csv (fig7 and fig8 ``curvature``).
    ``params``: ``stats`` (its ``confidence``), optional ``title_suffix``, optional ``depth``
    (fig1, fig5, fig6, fig8) and ``step`` (fig1, fig7, fig8) that the data must match, and
    optional ``expect``: per input name, the runs (model, seed, step) it must hold: a run's file
    holds that identity (:func:`hessdepth.h5io.check_identity`); a table holds those runs, and the
    figure draws them.
    """
    spec = FIGURES.get(name)
    if spec is None:
        raise ValueError(f"unknown figure {name!r}; expected one of {tuple(FIGURES)}")
    missing = [k for k in spec.inputs if k not in inputs]
    if missing:
        raise ValueError(f"{name} reads inputs {list(spec.inputs)}; missing {missing}")
    expect = params.get("expect") or {}
    _check_identities(inputs, {k: v for k, v in expect.items() if k not in TABLE_INPUTS})
    with matplotlib.rc_context(STYLE):
        return spec.draw(inputs, params, params.get("title_suffix") or "")


def save_figure(fig: Figure, pdf: os.PathLike | str, png: os.PathLike | str, dpi: int = 200) -> None:
    """Write ``fig`` as vector PDF and ``dpi`` PNG, each under a temporary name first."""
    with matplotlib.rc_context(STYLE):
        for path, fmt in ((pdf, "pdf"), (png, "png")):
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi)
