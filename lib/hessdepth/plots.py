"""The paper's six figures, and two of the optional curvature stages, drawn from the workflow's files.

:func:`make_figure` reads the files one figure needs and returns a matplotlib ``Figure``
(built without pyplot, so no display or global state is involved); :func:`save_figure`
writes it as PDF and PNG. Figures of synthetic data say so in their title; diverged runs are
drawn apart (dashed, crossed, or listed as "diverged (not plotted)"), never as normal lines.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import checkpoints
from .atomic import atomic_path
from .h5io import OutputError, check_identity, open_checked, rebuild_hint
from .summary import BLOCKS, model_label, read_csv, read_identity, read_summary

FIGURES = (
    "fig1_gradnorms",
    "fig2_depth_densities",
    "fig3_moments",
    "fig4_densities_steps",
    "fig5_curves",
    "fig6_curves",
    "fig7_blocks",
    "fig8_gauss_newton",
)
ARCH_COLORS = {"resnet": "#1f77b4", "simple": "#d62728"}
STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
}
DENSITY_FLOOR = 1e-7  # log-density axes show this fraction of the peak and above
logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter


def _paths(value) -> list[str]:
    return [value] if isinstance(value, (str, os.PathLike)) else list(value)


def _single(value, name: str) -> str:
    paths = _paths(value)
    if len(paths) != 1:
        raise ValueError(f"input '{name}' must be one file, got {len(paths)}")
    return paths[0]


def _new_figure(ncols: int = 1, width: float = 5.0, height: float = 3.4) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _title(fig: Figure, text: str, synthetic: bool, suffix: str = "") -> None:
    title = text + (f" {suffix}" if suffix else "")
    fig.suptitle(title + ("\n(synthetic data, not CIFAR-10)" if synthetic else ""), fontsize=10)


def _diverged_handle(label: str) -> Patch:
    return Patch(facecolor="none", edgecolor="0.4", hatch="////", label=f"{label}: diverged (not plotted)")


# --- figure 1: per-variable gradient norms --------------------------------------------------------
def read_gradnorms(path: os.PathLike | str) -> dict:
    """Names, norms and identity (arch, depth, step, synthetic) of a gradient-norm file."""
    with open_checked(path, ("names", "norms")) as f:
        out = read_identity(f, path, ("model", "arch", "depth", "step", "synthetic"))
        out["names"] = [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][()]]
        out["norms"] = f["norms"][()].astype(float)
    return out


def lower_norm_fraction(resnet: dict, simple: dict) -> float:
    """Fraction of variables whose gradient norm is strictly lower in the ResNet."""
    if resnet["names"] != simple["names"]:
        raise ValueError("the ResNet and simple gradient-norm files list different variables")
    return float(np.mean(resnet["norms"] < simple["norms"]))


def gradnorms_figure(resnet: dict, simple: dict, suffix: str = "") -> Figure:
    fraction = lower_norm_fraction(resnet, simple)
    fig, (ax,) = _new_figure(width=6.0)
    index = np.arange(len(resnet["names"]))
    for run, marker in ((resnet, "o"), (simple, "s")):
        ax.plot(
            index,
            run["norms"],
            marker=marker,
            ms=2.5,
            lw=0.6,
            color=ARCH_COLORS[run["arch"]],
            label=model_label(run["arch"], run["depth"]),
        )
    ax.set_yscale("log")
    ax.set_xlabel("variable (network order: input conv → stages → fully connected)")
    ax.set_ylabel("gradient norm (full training set)")
    ax.legend(title=f"{100 * fraction:.1f}% of variables lower in the ResNet", loc="best")
    _title(
        fig,
        f"Per-variable gradient norms, {model_label('resnet', resnet['depth'])} vs "
        f"{model_label('simple', simple['depth'])} at step {resnet['step']}",
        resnet["synthetic"] or simple["synthetic"],
        suffix,
    )
    return fig


# --- figures 2 and 4: normalised densities --------------------------------------------------------
def _mean_densities(spectra: Sequence[tuple[dict, np.ndarray]], key) -> dict:
    """Per ``key(row)``: (rows, mean density over seeds that did not diverge or None)."""
    groups: dict = {}
    for row, dens in spectra:
        groups.setdefault(key(row), []).append((row, dens))
    out = {}
    for k, items in groups.items():
        kept = [d for r, d in items if not r["diverged"]]
        out[k] = ([r for r, _ in items], np.mean(kept, axis=0) if kept else None)
    return out


def _density_axes(ax, grid: np.ndarray, curves: Sequence[np.ndarray]) -> None:
    peak = max((np.nanmax(c) for c in curves), default=1.0)
    floor = peak * DENSITY_FLOOR
    ax.set_yscale("log")
    ax.set_ylim(floor, peak * 3)
    visible = np.zeros(len(grid), bool)
    for c in curves:
        visible |= c > floor
    if visible.any():
        lo, hi = grid[visible][[0, -1]]
        pad = 0.03 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel("eigenvalue / standard deviation of the spectrum")
    ax.set_ylabel("density (log scale)")


def _kernel_note(ax, rows: Sequence[dict]) -> None:
    """States the smoothing kernel's width (std units) on the axes."""
    widths = np.array([r["kernel_width"] for r in rows if not r["diverged"]], dtype=float)
    widths = widths[np.isfinite(widths)]
    if not len(widths):
        return
    span = f"{widths.min():.2g}" if np.ptp(widths) < 0.05 * widths.min() else f"{widths.min():.2g}-{widths.max():.2g}"
    ax.text(
        0.02,
        0.02,
        f"Gaussian kernel s.d. {span} std units",
        transform=ax.transAxes,
        fontsize=7,
        color="0.35",
        va="bottom",
    )


def _seed_note(rows: Sequence[dict]) -> str:
    n = len({r["seed"] for r in rows if not r["diverged"]})
    return f", mean of {n} seeds" if n > 1 else ""


def depth_densities_figure(spectra, grid: np.ndarray, suffix: str = "") -> Figure:
    groups = _mean_densities(spectra, key=lambda r: (r["arch"], r["depth"]))
    depths = sorted(d for _, d in groups)
    cmap = matplotlib.colormaps["viridis"]
    norm = matplotlib.colors.Normalize(min(depths), max(depths) if len(depths) > 1 else min(depths) + 1)
    fig, (ax,) = _new_figure(width=5.5)
    handles, curves = [], []
    for (arch, depth), (rows, dens) in sorted(groups.items(), key=lambda kv: kv[0][1]):
        label = model_label(arch, depth)
        if dens is None:
            handles.append(_diverged_handle(label))
            continue
        (line,) = ax.plot(
            grid, dens, lw=1.1, drawstyle="steps-mid", color=cmap(norm(depth) * 0.9), label=label + _seed_note(rows)
        )
        handles.append(line)
        curves.append(dens)
    _density_axes(ax, grid, curves)
    ax.legend(handles=handles, loc="upper right")
    rows = [r for r, _ in spectra]
    _kernel_note(ax, rows)
    archs = " and ".join(sorted({"ResNet" if r["arch"] == "resnet" else "simple" for r in rows}))
    _title(
        fig,
        f"Normalised Hessian eigenvalue density of {archs} nets of growing depth, step "
        f"{', '.join(str(s) for s in sorted({r['step'] for r in rows}))}",
        any(r["synthetic"] for r in rows),
        suffix,
    )
    return fig


def densities_steps_figure(spectra, grid: np.ndarray, suffix: str = "") -> Figure:
    groups = _mean_densities(spectra, key=lambda r: (r["step"], r["arch"], r["depth"]))
    steps = sorted({k[0] for k in groups})
    fig, axes = _new_figure(ncols=len(steps), width=4.2 * len(steps))
    curves = [d for _, d in groups.values() if d is not None]
    for ax, step in zip(axes, steps):
        handles = []
        for (s, arch, depth), (rows, dens) in sorted(groups.items()):
            if s != step:
                continue
            label = model_label(arch, depth)
            if dens is None:
                handles.append(_diverged_handle(label))
                continue
            (line,) = ax.plot(
                grid, dens, lw=1.1, drawstyle="steps-mid", color=ARCH_COLORS[arch], label=label + _seed_note(rows)
            )
            handles.append(line)
        _density_axes(ax, grid, curves)
        _kernel_note(ax, [r for r, _ in spectra if r["step"] == step])
        ax.set_title(f"step {step}")
        ax.legend(handles=handles, loc="upper right")
    rows = [r for r, _ in spectra]
    names = " vs ".join(model_label(a, d) for a, d in sorted({(r["arch"], r["depth"]) for r in rows}))
    _title(fig, f"Normalised Hessian eigenvalue density, {names}", any(r["synthetic"] for r in rows), suffix)
    return fig


# --- figure 3: skewness and kurtosis vs depth ---------------------------------------------------
ESTIMATOR_STYLES = {
    "slq": dict(marker="o", ls="-", label="stochastic Lanczos quadrature"),
    "hutch": dict(marker="s", ls="--", mfc="white", label="Hutchinson moments"),
}


def _errorbars(ax, rows: Sequence[dict], column: str, shift: float, color: str, style: dict) -> np.ndarray:
    """Plot ``column`` with its [lo, hi] interval against depth; return the values."""
    y = np.array([r[column] for r in rows], dtype=float)
    bounds = np.array([[r[f"{column}_lo"], r[f"{column}_hi"]] for r in rows], dtype=float).reshape(-1, 2)
    err = np.nan_to_num(np.abs(bounds.T - y))
    style = {k: v for k, v in style.items() if k != "label"}
    ax.errorbar(np.array([r["depth"] for r in rows]) + shift, y, yerr=err, color=color, ms=4, lw=1, capsize=2, **style)
    return y


def _mark_diverged(ax, depth: int, color: str) -> None:
    along_bottom = ax.get_xaxis_transform()
    ax.plot(depth, 0.03, "x", color=color, ms=6, transform=along_bottom)
    ax.annotate(
        "diverged", (depth, 0.06), xycoords=along_bottom, rotation=90, ha="center", va="bottom", fontsize=7, color=color
    )


def _log_if_decades(ax, values: np.ndarray) -> None:
    """Log axis for positive values spanning decades; asinh (a signed log) when signs differ too."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return
    if (finite > 0).all() and finite.max() / finite.min() > 10:
        ax.set_yscale("log")
    elif (finite < 0).any() and np.abs(finite).max() > 10:
        ax.set_yscale("asinh")


# (statistic, y label): skewness on the asinh (signed log) scale, unless all positive; the others on
# the log scale, where their intervals live (summary.scale_of)
MOMENT_PANELS = (
    ("skewness", "skewness"),
    ("kurtosis", "kurtosis (Gaussian = 3)"),
    ("outliers", "effective outliers, P / kurtosis"),
)


def _statistic_scale(ax, stat: str, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    positive = len(finite) and (finite > 0).all()
    ax.set_yscale("log" if stat != "skewness" or positive else "asinh")


def moments_figure(by_model: Sequence[dict], confidence: float, suffix: str = "") -> Figure:
    fig, axes = _new_figure(ncols=len(MOMENT_PANELS), width=12.0)
    depths = sorted({r["depth"] for r in by_model})
    offset = 0.012 * (max(depths) - min(depths) or 1)  # SLQ left, Hutchinson right of the depth
    for ax, (stat, label) in zip(axes, MOMENT_PANELS):
        values = []
        for arch, color in ARCH_COLORS.items():
            rows = sorted((r for r in by_model if r["arch"] == arch), key=lambda r: r["depth"])
            ok = [r for r in rows if not r["diverged"]]
            for (est, style), shift in zip(ESTIMATOR_STYLES.items(), (-offset, offset)):
                values.append(_errorbars(ax, ok, f"{est}_{stat}", shift, color, style))
            for r in rows:
                if r["diverged"]:
                    _mark_diverged(ax, r["depth"], color)
        _statistic_scale(ax, stat, np.concatenate(values))
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel(label)
        ax.set_xticks(depths)
    handles = [Line2D([], [], color=c, lw=2, label="ResNet" if a == "resnet" else a) for a, c in ARCH_COLORS.items()]
    handles += [Line2D([], [], color="0.3", **style) for style in ESTIMATOR_STYLES.values()]
    fig.legend(handles=handles, loc="outside lower center", ncols=4)
    steps = ", ".join(str(s) for s in sorted({r["step"] for r in by_model}))
    _title(
        fig,
        f"Skewness, kurtosis and effective number of outliers (P / kurtosis, P parameters) vs depth, step {steps}\n"
        f"error bars: {100 * confidence:g}% interval of the mean over seeds, on each axis's scale "
        f"(one seed: over probes)",
        any(r["synthetic"] for r in by_model),
        suffix,
    )
    return fig


# --- figures 7 and 8: blocks of the Hessian, and its Gauss-Newton part ----------------------------
BLOCK_COLORS = dict(zip(BLOCKS, ("#7f7f7f", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")))
PART_STYLES = {
    "hessian": dict(marker="o", ls="none", label="Hessian H"),
    "gauss_newton": dict(marker="s", ls="none", mfc="white", label="Gauss-Newton part G"),
}
ARCH_NAMES = {"resnet": "ResNet", "simple": "simple"}


def _interval_note(confidence: float) -> str:
    return f"error bars: {100 * confidence:g}% interval of the mean over seeds (one seed: over probes)"


def blocks_figure(by_model: Sequence[dict], confidence: float, suffix: str = "") -> Figure:
    fig = Figure(figsize=(8.5, 5.6), layout="constrained")
    grid = fig.subplots(2, 2, sharex=True, sharey="row")
    depths = sorted({r["depth"] for r in by_model})
    offset = 0.012 * (max(depths) - min(depths) or 1)
    for axes, stat in zip(grid, ("skewness", "kurtosis")):
        values = []
        for ax, arch in zip(axes, ARCH_COLORS):
            rows = sorted((r for r in by_model if r["arch"] == arch), key=lambda r: r["depth"])
            ok = [r for r in rows if not r["diverged"]]
            for i, block in enumerate(BLOCKS):
                shift = (i - (len(BLOCKS) - 1) / 2) * offset
                values.append(
                    _errorbars(ax, ok, f"block_{block}_{stat}", shift, BLOCK_COLORS[block], dict(marker="o", ls="-"))
                )
            for r in rows:
                if r["diverged"]:
                    _mark_diverged(ax, r["depth"], ARCH_COLORS[arch])
            ax.set_title(f"{ARCH_NAMES[arch]} nets, {stat}")
            ax.set_xticks(depths)
        _log_if_decades(axes[0], np.concatenate(values))
        axes[0].set_ylabel(stat + (" (Gaussian = 3)" if stat == "kurtosis" else ""))
    for ax in grid[1]:
        ax.set_xlabel("depth (layers)")
    handles = [Line2D([], [], color=c, marker="o", label=b) for b, c in BLOCK_COLORS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), title="block of the Hessian")
    steps = ", ".join(str(s) for s in sorted({r["step"] for r in by_model}))
    _title(
        fig,
        f"Skewness and kurtosis of each diagonal block of the Hessian vs depth, step {steps}\n"
        + _interval_note(confidence),
        any(r["synthetic"] for r in by_model),
        suffix,
    )
    return fig


def _point(ax, x: float, row: dict, column: str, color: str, style: dict) -> float:
    y, lo, hi = (float(row[c]) for c in (column, f"{column}_lo", f"{column}_hi"))
    err = np.nan_to_num(np.abs(np.array([[lo], [hi]]) - y))
    ax.errorbar(
        [x], [y], yerr=err, color=color, ms=5, lw=1, capsize=3, **{k: v for k, v in style.items() if k != "label"}
    )
    return y


def gauss_newton_figure(by_model: Sequence[dict], confidence: float, suffix: str = "") -> Figure:
    fig, axes = _new_figure(ncols=2, width=7.0)
    rows = sorted(by_model, key=lambda r: r["arch"])
    for ax, stat in zip(axes, ("skewness", "kurtosis")):
        values = []
        for x, row in enumerate(rows):
            if row["diverged"]:
                _mark_diverged(ax, x, ARCH_COLORS[row["arch"]])
                continue
            for (part, style), shift in zip(PART_STYLES.items(), (-0.12, 0.12)):
                values.append(_point(ax, x + shift, row, f"{part}_{stat}", ARCH_COLORS[row["arch"]], style))
        _log_if_decades(ax, np.array(values))
        ax.set_xticks(range(len(rows)), [model_label(r["arch"], r["depth"]) for r in rows])
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel(stat + (" (Gaussian = 3)" if stat == "kurtosis" else ""))
    handles = [Line2D([], [], color="0.3", **style) for style in PART_STYLES.values()]
    fig.legend(handles=handles, loc="outside lower center", ncols=2)
    steps = ", ".join(str(s) for s in sorted({r["step"] for r in rows}))
    _title(
        fig,
        f"The Hessian H and its Gauss-Newton part G (same probes), step {steps}\n" + _interval_note(confidence),
        any(r["synthetic"] for r in rows),
        suffix,
    )
    return fig


# --- figures 5 and 6: training curves --------------------------------------------------------------
def read_curve(path: os.PathLike | str) -> dict:
    """Training steps, loss and learning rate of a curve file, with its identity."""
    arrays, attrs = checkpoints.read_curve(path)
    missing = [k for k in ("arch", "depth", "synthetic") if k not in attrs]
    if missing:
        raise OutputError(f"{path}: missing attributes {missing}")
    out = {k: attrs[k] for k in ("model", "arch", "depth", "seed", "synthetic", "diverged")}
    out.update(step=arrays["train/step"], loss=arrays["train/loss"], lr=arrays["train/lr"])
    return out


def curves_figure(curves: Sequence[dict], suffix: str = "") -> Figure:
    fig, (ax,) = _new_figure(width=5.5)
    handles = []
    for arch in ("resnet", "simple"):
        runs = [c for c in curves if c["arch"] == arch]
        if not runs:
            continue
        color = ARCH_COLORS[arch]
        for c in runs:
            ax.plot(
                c["step"],
                c["loss"],
                lw=0.6,
                alpha=0.45 if len(runs) > 1 else 0.9,
                color=color,
                ls="--" if c["diverged"] else "-",
            )
            if c["diverged"]:
                finite = np.isfinite(c["loss"])
                last = np.flatnonzero(finite)[-1] if finite.any() else None
                if last is not None:
                    ax.plot(c["step"][last], c["loss"][last], "x", color=color, ms=7, mew=1.5)
                    ax.annotate(
                        f"seed {c['seed']} diverged",
                        (c["step"][last], c["loss"][last]),
                        xytext=(4, 4),
                        textcoords="offset points",
                        fontsize=7,
                        color=color,
                    )
        ok = [c for c in runs if not c["diverged"]]
        same_steps = ok and all(np.array_equal(c["step"], ok[0]["step"]) for c in ok)
        if len(ok) > 1 and same_steps:
            ax.plot(ok[0]["step"], np.mean([c["loss"] for c in ok], axis=0), lw=1.4, color=color)
        bold = ", mean bold" if len(ok) > 1 and same_steps else ""
        note = f" ({len(runs)} seeds{bold})" if len(runs) > 1 else ""
        handles.append(Line2D([], [], color=color, lw=1.4, label=model_label(arch, runs[0]["depth"]) + note))
    if any(c["diverged"] for c in curves):
        handles.append(Line2D([], [], color="0.3", ls="--", marker="x", label="diverged run"))
    ref = curves[0]
    drops = ref["step"][1:][np.diff(ref["lr"]) != 0]
    for step in drops:
        ax.axvline(step, color="0.5", ls=":", lw=0.8)
    if len(drops):
        handles.append(Line2D([], [], color="0.5", ls=":", label="learning-rate change"))
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (log scale)")
    ax.legend(handles=handles, loc="best")
    depths = sorted({c["depth"] for c in curves})
    names = " vs ".join(
        model_label(a, d) for a in ("resnet", "simple") for d in depths if any(c["arch"] == a for c in curves)
    )
    n = ", ".join(f"n = {(d - 2) // 6}" for d in depths)
    _title(fig, f"Training loss, {names} ({n})", any(c["synthetic"] for c in curves), suffix)
    return fig


# --- reading and dispatch ---------------------------------------------------------------------
TABLE_INPUTS = ("summary", "curvature")  # the summary tables; every other input is one run's file


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


def make_figure(name: str, inputs: dict, params: dict) -> Figure:
    """Figure ``name`` (one of :data:`FIGURES`) from its input files.

    ``inputs``: fig1 ``resnet`` and ``simple`` (gradient norms); fig5 and fig6 ``curves``; fig2,
    fig3 and fig4 ``summary`` (summary.h5: densities and the per-model table); fig7 and fig8
    ``curvature`` (summary_curvature_by_model.csv). ``params``: ``stats`` (its ``confidence``),
    optional ``title_suffix``, optional ``depth`` (fig1, fig5, fig6, fig8) and ``step`` (fig1,
    fig7, fig8) that the data must match, and optional ``expect``: per input name, the runs
    (model, seed, step) it must hold: a run's file holds that identity
    (:func:`hessdepth.h5io.check_identity`); a table holds those runs, and the figure draws them.
    """
    expect = params.get("expect") or {}
    _check_identities(inputs, {k: v for k, v in expect.items() if k not in TABLE_INPUTS})
    suffix = params.get("title_suffix") or ""
    with matplotlib.rc_context(STYLE):
        if name == "fig1_gradnorms":
            resnet = read_gradnorms(_single(inputs["resnet"], "resnet"))
            simple = read_gradnorms(_single(inputs["simple"], "simple"))
            _check_expected([resnet, simple], params, ("depth", "step"))
            return gradnorms_figure(resnet, simple, suffix)
        if name in ("fig2_depth_densities", "fig4_densities_steps"):
            table = _single(inputs["summary"], "summary")
            summary, _ = read_summary(table)
            spectra = [
                (summary.rows[i], summary.density[i]) for i in select_runs(summary.rows, expect.get("summary"), table)
            ]
            draw = depth_densities_figure if name == "fig2_depth_densities" else densities_steps_figure
            return draw(spectra, summary.grid, suffix)
        confidence = params["stats"]["confidence"]
        if name == "fig3_moments":
            table = _single(inputs["summary"], "summary")
            by_model = select_models(read_summary(table)[1], expect.get("summary"), table)
            return moments_figure(by_model, confidence, suffix)
        if name in ("fig7_blocks", "fig8_gauss_newton"):
            table = _single(inputs["curvature"], "curvature")
            by_model = select_models(read_csv(table), expect.get("curvature"), table)
            _check_expected(by_model, params, ("depth", "step"))
            draw = blocks_figure if name == "fig7_blocks" else gauss_newton_figure
            return draw(by_model, confidence, suffix)
        if name in ("fig5_curves", "fig6_curves"):
            curves = [read_curve(p) for p in _paths(inputs["curves"])]
            _check_expected(curves, params, ("depth",))
            return curves_figure(curves, suffix)
    raise ValueError(f"unknown figure {name!r}; expected one of {FIGURES}")


def save_figure(fig: Figure, pdf: os.PathLike | str, png: os.PathLike | str, dpi: int = 200) -> None:
    """Write ``fig`` as vector PDF and ``dpi`` PNG, each under a temporary name first."""
    with matplotlib.rc_context(STYLE):
        for path, fmt in ((pdf, "pdf"), (png, "png")):
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi)
