"""What every figure shares: the style, the architectures' colours, and drawing helpers."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

ARCH_COLORS = {"resnet": "#1f77b4", "simple": "#d62728"}
ARCH_NAMES = {"resnet": "ResNet", "simple": "simple"}
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
logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 3.4) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def title(fig: Figure, text: str, synthetic: bool, suffix: str = "") -> None:
    heading = text + (f" {suffix}" if suffix else "")
    fig.suptitle(heading + ("\n(synthetic data, not CIFAR-10)" if synthetic else ""), fontsize=10)


def diverged_handle(label: str) -> Patch:
    return Patch(facecolor="none", edgecolor="0.4", hatch="////", label=f"{label}: diverged (not plotted)")


def errorbars(ax, rows: Sequence[dict], column: str, shift: float, color: str, style: dict) -> np.ndarray:
    """Plot ``column`` with its [lo, hi] interval against depth; return the values."""
    y = np.array([r[column] for r in rows], dtype=float)
    bounds = np.array([[r[f"{column}_lo"], r[f"{column}_hi"]] for r in rows], dtype=float).reshape(-1, 2)
    err = np.nan_to_num(np.abs(bounds.T - y))
    style = {k: v for k, v in style.items() if k != "label"}
    ax.errorbar(np.array([r["depth"] for r in rows]) + shift, y, yerr=err, color=color, ms=4, lw=1, capsize=2, **style)
    return y


def mark_diverged(ax, depth: int, color: str) -> None:
    along_bottom = ax.get_xaxis_transform()
    ax.plot(depth, 0.03, "x", color=color, ms=6, transform=along_bottom)
    ax.annotate(
        "diverged", (depth, 0.06), xycoords=along_bottom, rotation=90, ha="center", va="bottom", fontsize=7, color=color
    )


def log_if_decades(ax, values: np.ndarray) -> None:
    """Log axis for positive values spanning decades; asinh (a signed log) when signs differ too."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return
    if (finite > 0).all() and finite.max() / finite.min() > 10:
        ax.set_yscale("log")
    elif (finite < 0).any() and np.abs(finite).max() > 10:
        ax.set_yscale("asinh")


def interval_note(confidence: float) -> str:
    return f"error bars: {100 * confidence:g}% interval of the mean over seeds (one seed: over probes)"
