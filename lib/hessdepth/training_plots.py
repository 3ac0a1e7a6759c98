"""Figures of training, drawn from the runs' own files: per-variable gradient norms (figure 1)
and training curves (figures 5 and 6)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from . import checkpoints
from .h5io import OutputError, open_checked
from .plot_style import ARCH_COLORS, new_figure, title
from .summary import model_label, read_identity


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
    fig, (ax,) = new_figure(width=6.0)
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
    title(
        fig,
        f"Per-variable gradient norms, {model_label('resnet', resnet['depth'])} vs "
        f"{model_label('simple', simple['depth'])} at step {resnet['step']}",
        resnet["synthetic"] or simple["synthetic"],
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
    fig, (ax,) = new_figure(width=5.5)
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
    title(fig, f"Training loss, {names} ({n})", any(c["synthetic"] for c in curves), suffix)
    return fig
