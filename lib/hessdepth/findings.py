"""Verdicts on the paper's three findings, and the results document, from the summary tables.

The rules that decide each verdict are :data:`RULES`, printed verbatim into the document.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.stats import rankdata

from .summary import model_label

ALPHA = 0.05
N_PERMUTATIONS = 20000
HOLDS, REVERSED, UNRESOLVED = "holds", "reversed", "not resolved at this scale"
RULES = f"""\
Each finding is judged at every checkpoint step, from the tables alone (ALPHA = {ALPHA}).

1. **Deeper simple nets train slower.** Simple and ResNet runs of equal depth and seed are
   paired; their gap is log(simple train loss / ResNet train loss). *Holds* when both the simple
   nets' train loss and the gap rise with depth (Spearman rho > 0 with p < ALPHA); *reversed* when
   the gap falls with depth (rho < 0, p < ALPHA); otherwise *not resolved at this scale*. A
   diverged run counts as the worst possible loss.
2. **Simple nets' spectra grow heavier tails.** Spearman rho of the SLQ skewness and of the SLQ
   kurtosis against depth, over the simple runs that did not diverge. *Holds* when both rise
   (rho > 0, p < ALPHA); *reversed* when both fall; otherwise *not resolved*. Hutchinson's rho is
   shown as an independent check.
3. **Residual connections cut the tails.** At each depth with both architectures, the SLQ
   kurtosis intervals of the per-model table are compared (t-interval of the mean across seeds,
   or the probe interval when there is one seed). *Holds* when the ResNet interval lies wholly
   below the simple one at more than half of the depths compared and wholly above at none;
   *reversed* in the mirror case; otherwise *not resolved*.

Spearman p-values are two-sided and come from permuting the values against depth: all
orderings when there are at most {N_PERMUTATIONS}, else {N_PERMUTATIONS} random ones (seed 0).
Ties (several seeds at one depth) get mean ranks; values are compared at 12 significant digits.
"""
FINDINGS = {
    1: "Deeper simple nets train slower (train loss rises with depth more than for ResNets)",
    2: "Simple nets' Hessian spectra grow heavier tails with depth (skewness and kurtosis rise)",
    3: "Residual connections cut the tails (ResNet kurtosis below simple kurtosis at equal depth)",
}


@dataclass
class Verdict:
    finding: int
    step: int
    verdict: str
    evidence: str


@dataclass
class Correlation:
    rho: float
    p: float
    n: int

    def __str__(self) -> str:
        if math.isnan(self.rho):
            return f"rho undefined (n={self.n})"
        return f"rho={self.rho:+.2f}, p={self.p:.3g}, n={self.n}"

    def direction(self, alpha: float = ALPHA) -> int:
        """+1 / -1 for a significant rise / fall, 0 otherwise."""
        if math.isnan(self.rho) or not self.p < alpha:
            return 0
        return int(np.sign(self.rho))


def spearman(x: Sequence[float], y: Sequence[float], seed: int = 0) -> Correlation:
    """Spearman rank correlation with a two-sided permutation p-value (ties get mean ranks).

    Values are compared at 12 significant digits, so rounding noise does not break true ties.
    """
    x, y = (np.array([float(f"{v:.12g}") for v in a], dtype=float) for a in (x, y))
    keep = ~(np.isnan(x) | np.isnan(y))
    rx, ry = rankdata(x[keep]), rankdata(y[keep])
    n = len(rx)
    if n < 3 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return Correlation(np.nan, np.nan, n)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = np.sqrt((rx**2).sum() * (ry**2).sum())
    rho = float(rx @ ry / scale)
    if math.factorial(n) <= N_PERMUTATIONS:
        perms = np.array(list(itertools.permutations(range(n))))
        null = ry[perms] @ rx / scale
        p = float(np.mean(np.abs(null) >= abs(rho) - 1e-12))
    else:
        rng = np.random.default_rng(seed)
        perms = rng.permuted(np.tile(np.arange(n), (N_PERMUTATIONS, 1)), axis=1)
        null = ry[perms] @ rx / scale
        p = float((np.sum(np.abs(null) >= abs(rho) - 1e-12) + 1) / (N_PERMUTATIONS + 1))
    return Correlation(rho, p, n)


def _at(rows: Sequence[dict], step: int, arch: str) -> list[dict]:
    return [r for r in rows if r["step"] == step and r["arch"] == arch]


def _loss(row: dict) -> float:
    return math.inf if row["diverged"] else row["train_loss"]


def training_verdict(rows: Sequence[dict], step: int) -> Verdict:
    """Finding 1 from the per-run table at ``step``."""
    simple = _at(rows, step, "simple")
    resnet = {(r["depth"], r["seed"]): r for r in _at(rows, step, "resnet")}
    rho_simple = spearman([r["depth"] for r in simple], [_loss(r) for r in simple])
    rho_resnet = spearman([d for d, _ in resnet], [_loss(r) for r in resnet.values()])
    paired = [(s, resnet[s["depth"], s["seed"]]) for s in simple if (s["depth"], s["seed"]) in resnet]
    paired = [(s, r) for s, r in paired if not r["diverged"]]
    rho_gap = spearman([s["depth"] for s, _ in paired],
                       [np.log(_loss(s)) - np.log(_loss(r)) for s, r in paired])
    if rho_simple.direction() > 0 and rho_gap.direction() > 0:
        verdict = HOLDS
    elif rho_gap.direction() < 0:
        verdict = REVERSED
    else:
        verdict = UNRESOLVED
    evidence = (f"simple train loss vs depth: {rho_simple}; ResNet: {rho_resnet}; "
                f"log(simple/ResNet) gap vs depth: {rho_gap}")
    return Verdict(1, step, verdict, evidence)


def tails_verdict(rows: Sequence[dict], step: int) -> Verdict:
    """Finding 2 from the per-run table at ``step``."""
    simple = [r for r in _at(rows, step, "simple") if not r["diverged"]]
    depth = [r["depth"] for r in simple]
    corr = {(e, s): spearman(depth, [r[f"{e}_{s}"] for r in simple])
            for e in ("slq", "hutch") for s in ("skewness", "kurtosis")}
    directions = {corr["slq", s].direction() for s in ("skewness", "kurtosis")}
    verdict = {frozenset({1}): HOLDS, frozenset({-1}): REVERSED}.get(frozenset(directions), UNRESOLVED)
    evidence = "; ".join(
        f"{s} vs depth: SLQ {corr['slq', s]} (Hutchinson {corr['hutch', s]})"
        for s in ("skewness", "kurtosis")
    )
    return Verdict(2, step, verdict, evidence)


def residual_verdict(by_model: Sequence[dict], step: int) -> Verdict:
    """Finding 3 from the per-model table at ``step``."""
    resnet = {r["depth"]: r for r in _at(by_model, step, "resnet") if not r["diverged"]}
    simple = {r["depth"]: r for r in _at(by_model, step, "simple") if not r["diverged"]}
    below, above, overlap = [], [], []
    for depth in sorted(resnet.keys() & simple.keys()):
        r, s = resnet[depth], simple[depth]
        if not np.isfinite([x[f"slq_kurtosis_{b}"] for x in (r, s) for b in ("lo", "hi")]).all():
            continue
        if r["slq_kurtosis_hi"] < s["slq_kurtosis_lo"]:
            below.append(depth)
        elif r["slq_kurtosis_lo"] > s["slq_kurtosis_hi"]:
            above.append(depth)
        else:
            overlap.append(depth)
    compared = len(below) + len(above) + len(overlap)
    if below and not above and len(below) > compared / 2:
        verdict = HOLDS
    elif above and not below and len(above) > compared / 2:
        verdict = REVERSED
    else:
        verdict = UNRESOLVED
    evidence = (f"{compared} depths compared; ResNet kurtosis interval wholly below simple at "
                f"depths {below or 'none'}, wholly above at {above or 'none'}, overlapping at "
                f"{overlap or 'none'}")
    return Verdict(3, step, verdict, evidence)


def verdicts(rows: Sequence[dict], by_model: Sequence[dict]) -> list[Verdict]:
    """All three findings at every step of the table."""
    out = []
    for step in sorted({r["step"] for r in rows}):
        out += [training_verdict(rows, step), tails_verdict(rows, step), residual_verdict(by_model, step)]
    return out


def _num(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3g}"


def _with_interval(row: dict, name: str) -> str:
    if row["diverged"]:
        return "diverged"
    lo, hi = row[f"{name}_lo"], row[f"{name}_hi"]
    interval = f" [{_num(lo)}, {_num(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    return _num(row[name]) + interval


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in line) + " |" for line in body]


def _moments_table(by_model: Sequence[dict], step: int, estimator: str) -> list[str]:
    models = {(r["arch"], r["depth"]): r for r in by_model if r["step"] == step}
    header = ["depth", "ResNet skewness", "simple skewness", "ResNet kurtosis", "simple kurtosis",
              "seeds (ResNet / simple)"]
    body = []
    for depth in sorted({d for _, d in models}):
        cells = [str(depth)]
        for stat in ("skewness", "kurtosis"):
            for arch in ("resnet", "simple"):
                row = models.get((arch, depth))
                cells.append(_with_interval(row, f"{estimator}_{stat}") if row else "")
        seeds = [models[a, depth]["n_seeds"] if (a, depth) in models else 0 for a in ("resnet", "simple")]
        cells.append(f"{seeds[0]} / {seeds[1]}")
        body.append(cells)
    return _table(header, body)


def _loss_table(by_model: Sequence[dict]) -> list[str]:
    steps = sorted({r["step"] for r in by_model})
    cells = {(r["arch"], r["depth"], r["step"]): r for r in by_model}
    body = []
    for arch, depth in sorted({(r["arch"], r["depth"]) for r in by_model}):
        line = [model_label(arch, depth)]
        for step in steps:
            row = cells.get((arch, depth, step))
            if row is None:
                line.append("")
                continue
            partly = row["n_diverged"] and not row["diverged"]
            line.append(_with_interval(row, "train_loss") + (f" ({row['n_diverged']} diverged)" if partly else ""))
        body.append(line)
    return _table(["model", *[f"step {s}" for s in steps]], body)


def render_results(
    rows: Sequence[dict],
    by_model: Sequence[dict],
    *,
    figures: Sequence[str],
    config: dict,
    machine: str,
    wall_time: str | None,
    sources: Sequence[str],
) -> str:
    """The results document (Markdown), from the per-run and per-model tables only.

    ``figures`` are paths relative to the document; ``sources`` name the tables it was made from.
    """
    datasets = sorted({r["dataset"] for r in rows})
    synthetic = any(r["synthetic"] for r in rows)
    lines = [
        "# Results: the effect of network depth on the Hessian spectrum",
        "",
        f"Generated from {', '.join(f'`{s}`' for s in sources)} by `scripts/results_doc.py`; "
        "every number below comes from those tables. Do not edit by hand.",
        "",
    ]
    if synthetic:
        lines += ["> **Synthetic data.** These runs use generated images, not CIFAR-10: they test the "
                  "workflow, not the paper's claims.", ""]
    models = [model_label(a, d) for a, d in sorted({(r["arch"], r["depth"]) for r in rows})]
    lines += [
        "## Setup",
        "",
        f"- Dataset: {', '.join(datasets)}",
        f"- Models: {', '.join(models)}; seeds: {sorted({r['seed'] for r in rows})}; "
        f"steps: {sorted({r['step'] for r in rows})}; BatchNorm mode of the Hessian: "
        f"{', '.join(sorted({r['bn_mode'] for r in rows}))}",
        f"- Runs that diverged: {sum(r['diverged'] for r in rows)} of {len(rows)}",
        f"- Machine: {machine}",
        f"- Wall time: {wall_time or 'not recorded'}",
        "",
        "<details><summary>Configuration</summary>",
        "",
        "```json",
        json.dumps(config, indent=2, default=str),
        "```",
        "",
        "</details>",
        "",
        "## Findings",
        "",
    ]
    lines += _table(["#", "finding", "step", "verdict", "statistics"],
                    [[v.finding, FINDINGS[v.finding], v.step, f"**{v.verdict}**", v.evidence]
                     for v in verdicts(rows, by_model)])
    lines += ["", "### How the verdicts are decided", "", RULES, ""]
    lines += ["## Skewness and kurtosis of the Hessian spectrum", "",
              "Mean over seeds that did not diverge, with its interval (t across seeds, or the "
              "probe interval for one seed); kurtosis is not excess (3 for a Gaussian).", ""]
    for step in sorted({r["step"] for r in by_model}):
        for estimator, name in (("slq", "stochastic Lanczos quadrature"), ("hutch", "Hutchinson moments")):
            lines += [f"### Step {step}, {name}", ""] + _moments_table(by_model, step, estimator) + [""]
    lines += ["## Training loss at each checkpoint", "",
              "The training loss recorded in each checkpoint; mean over seeds [t-interval when there "
              "are several].", ""]
    lines += _loss_table(by_model) + ["", "## Figures", ""]
    for path in figures:
        name = Path(path).stem
        lines += [f"### {name}", "", f"![{name}]({path})", ""]
    return "\n".join(lines)
