"""Figures of the spectrum, drawn from the summary tables: the densities (figures 2 and 4), the
moments against depth (figure 3), and where the outliers live (figures 7 and 8)."""

from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .plot_style import (
    ARCH_COLORS,
    ARCH_NAMES,
    diverged_handle,
    errorbars,
    interval_note,
    log_if_decades,
    mark_diverged,
    new_figure,
    title,
)
from .summary import BLOCKS, model_label

DENSITY_FLOOR = 1e-7  # log-density axes show this fraction of the peak and above


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
    fig, (ax,) = new_figure(width=5.5)
    handles, curves = [], []
    for (arch, depth), (rows, dens) in sorted(groups.items(), key=lambda kv: kv[0][1]):
        label = model_label(arch, depth)
        if dens is None:
            handles.append(diverged_handle(label))
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
    title(
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
    fig, axes = new_figure(ncols=len(steps), width=4.2 * len(steps))
    curves = [d for _, d in groups.values() if d is not None]
    for ax, step in zip(axes, steps):
        handles = []
        for (s, arch, depth), (rows, dens) in sorted(groups.items()):
            if s != step:
                continue
            label = model_label(arch, depth)
            if dens is None:
                handles.append(diverged_handle(label))
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
    title(fig, f"Normalised Hessian eigenvalue density, {names}", any(r["synthetic"] for r in rows), suffix)
    return fig


# --- figure 3: skewness and kurtosis vs depth ---------------------------------------------------
ESTIMATOR_STYLES = {
    "slq": dict(marker="o", ls="-", label="stochastic Lanczos quadrature"),
    "hutch": dict(marker="s", ls="--", mfc="white", label="Hutchinson moments"),
}


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
    fig, axes = new_figure(ncols=len(MOMENT_PANELS), width=12.0)
    depths = sorted({r["depth"] for r in by_model})
    offset = 0.012 * (max(depths) - min(depths) or 1)  # SLQ left, Hutchinson right of the depth
    for ax, (stat, label) in zip(axes, MOMENT_PANELS):
        values = []
        for arch, color in ARCH_COLORS.items():
            rows = sorted((r for r in by_model if r["arch"] == arch), key=lambda r: r["depth"])
            ok = [r for r in rows if not r["diverged"]]
            for (est, style), shift in zip(ESTIMATOR_STYLES.items(), (-offset, offset)):
                values.append(errorbars(ax, ok, f"{est}_{stat}", shift, color, style))
            for r in rows:
                if r["diverged"]:
                    mark_diverged(ax, r["depth"], color)
        _statistic_scale(ax, stat, np.concatenate(values))
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel(label)
        ax.set_xticks(depths)
    handles = [Line2D([], [], color=c, lw=2, label="ResNet" if a == "resnet" else a) for a, c in ARCH_COLORS.items()]
    handles += [Line2D([], [], color="0.3", **style) for style in ESTIMATOR_STYLES.values()]
    fig.legend(handles=handles, loc="outside lower center", ncols=4)
    steps = ", ".join(str(s) for s in sorted({r["step"] for r in by_model}))
    title(
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
                    errorbars(ax, ok, f"block_{block}_{stat}", shift, BLOCK_COLORS[block], dict(marker="o", ls="-"))
                )
            for r in rows:
                if r["diverged"]:
                    mark_diverged(ax, r["depth"], ARCH_COLORS[arch])
            ax.set_title(f"{ARCH_NAMES[arch]} nets, {stat}")
            ax.set_xticks(depths)
        log_if_decades(axes[0], np.concatenate(values))
        axes[0].set_ylabel(stat + (" (Gaussian = 3)" if stat == "kurtosis" else ""))
    for ax in grid[1]:
        ax.set_xlabel("depth (layers)")
    handles = [Line2D([], [], color=c, marker="o", label=b) for b, c in BLOCK_COLORS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), title="block of the Hessian")
    steps = ", ".join(str(s) for s in sorted({r["step"] for r in by_model}))
    title(
        fig,
        f"Skewness and kurtosis of each diagonal block of the Hessian vs depth, step {steps}\n"
        + interval_note(confidence),
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
    fig, axes = new_figure(ncols=2, width=7.0)
    rows = sorted(by_model, key=lambda r: r["arch"])
    for ax, stat in zip(axes, ("skewness", "kurtosis")):
        values = []
        for x, row in enumerate(rows):
            if row["diverged"]:
                mark_diverged(ax, x, ARCH_COLORS[row["arch"]])
                continue
            for (part, style), shift in zip(PART_STYLES.items(), (-0.12, 0.12)):
                values.append(_point(ax, x + shift, row, f"{part}_{stat}", ARCH_COLORS[row["arch"]], style))
        log_if_decades(ax, np.array(values))
        ax.set_xticks(range(len(rows)), [model_label(r["arch"], r["depth"]) for r in rows])
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel(stat + (" (Gaussian = 3)" if stat == "kurtosis" else ""))
    handles = [Line2D([], [], color="0.3", **style) for style in PART_STYLES.values()]
    fig.legend(handles=handles, loc="outside lower center", ncols=2)
    steps = ", ".join(str(s) for s in sorted({r["step"] for r in rows}))
    title(
        fig,
        f"The Hessian H and its Gauss-Newton part G (same probes), step {steps}\n" + interval_note(confidence),
        any(r["synthetic"] for r in rows),
        suffix,
    )
    return fig
