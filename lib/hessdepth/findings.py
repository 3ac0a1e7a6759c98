"""Verdicts on the paper's findings, and the curvature answers, from the summary tables.

The rules that decide each verdict are :data:`RULES` (and :data:`CURVATURE_RULES`), printed
verbatim into the results document (:mod:`hessdepth.document`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import PermutationMethod, pearsonr, rankdata

from .statistics import POWER, PairedComparison, paired_comparison
from .summary import BLOCKS, GN_PARTS, model_label, scale_of

ALPHA = 0.05
N_PERMUTATIONS = 20000
PRIMARY, CHECK = "hutch", "slq"
ESTIMATOR_NAMES = {"hutch": "Hutchinson", "slq": "SLQ"}
HOLDS, REVERSED, UNRESOLVED = "holds", "reversed", "not resolved at this scale"
RULES = f"""\
Each finding is judged at every checkpoint step, from the per-run table alone (ALPHA = {ALPHA}).
Spectral statistics come from Hutchinson's estimator (the primary one: most probes per product);
every spectral verdict is also computed from the SLQ quadrature moments, and the document says
where the two disagree.

1. **Deeper simple nets train slower.** Simple and ResNet runs of equal depth and seed are
   paired; their gap is log(simple train loss / ResNet train loss). *Holds* when both the simple
   nets' train loss and the gap rise with depth (Spearman rho > 0 with p < ALPHA); *reversed* when
   the gap falls with depth (rho < 0, p < ALPHA); otherwise *not resolved at this scale*. A
   diverged run counts as the worst possible loss. The train loss is the checkpoint's, over the
   whole training set with eval-mode BatchNorm (running statistics); early in training the
   running statistics of deep simple nets lag behind, and this loss can be far above the batch
   loss SGD sees (figures 5 and 6).
2. **Simple nets' spectra grow heavier tails.** Spearman rho of the skewness and of the kurtosis
   against depth, over the simple runs that did not diverge. *Holds* when both rise (rho > 0,
   p < ALPHA); *reversed* when both fall; otherwise *not resolved*.
3. **Residual connections cut the tails (same depth).** Paired comparisons: for every depth and
   seed with both architectures (same seed: same initial weights and batch order), the
   log-ratio log(simple / ResNet) of the kurtosis and the difference asinh(simple) -
   asinh(ResNet) of the skewness (a signed log: the log-ratio wherever both are large and
   positive, defined for either sign). *Holds* when the {1 - ALPHA:.0%} Student-t interval of
   the mean over all depths x seeds lies above 0 for both statistics; *reversed* when below 0
   for both; otherwise *not resolved*. Pairs with a diverged run are left out.
4. **A ResNet about twice as deep still has lighter tails** (the paper's ResNet-92 vs simple-44).
   The same paired rule, pairing simple-d with ResNet-d' of the same seed, d' = 2d-2 or 2d+4
   (n' = 2n or 2n+1 blocks per stage), wherever both were trained.

Findings 2-4 are decided again on a statistic that does not grow with the parameter count P:
the effective number of outliers P / kurtosis = (sum (lambda-mu)^2)^2 / sum (lambda-mu)^4 (a
spectrum of k equal outliers over a small bulk has about k; kurtosis itself grows like P at a
fixed k, so deeper nets, and a ResNet twice as deep, have larger kurtosis by construction).
Heavier tails are fewer effective outliers: finding 2 *holds* on it when it falls with depth
(Spearman rho < 0, p < ALPHA) and is *reversed* when it rises; findings 3 and 4 *hold* when the
{1 - ALPHA:.0%} interval of the paired log-ratio log(ResNet / simple) of it lies above 0 and are
*reversed* when below. Same depth means the same P (the two architectures have one parameter
list), so finding 3 on it is finding 3 on the kurtosis; finding 4 is where the two can differ.

Spearman p-values are two-sided (scipy.stats.pearsonr of the ranks, permutation method): all
orderings when there are at most {N_PERMUTATIONS}, else {N_PERMUTATIONS} random ones (seed 0).
Ties (several seeds at one depth) get mean ranks; values are compared at 12 significant digits.
A paired row gives the kurtosis ratio simple / ResNet (geometric mean over pairs) or the mean
asinh difference of the skewness, with its interval, the p-value of the paired t-test, and its
power: the pairs needed for {POWER:.0%} power at ALPHA if the true mean difference and its spread
were the observed ones (normal approximation, two-sided).
"""
FINDINGS = {
    1: "Deeper simple nets train slower (train loss rises with depth more than for ResNets)",
    2: "Simple nets' Hessian spectra grow heavier tails with depth (skewness and kurtosis rise)",
    3: "Residual connections cut the tails "
    "(simple nets' skewness and kurtosis above the ResNet's, same depth and seed)",
    4: "A ResNet about twice as deep has lighter tails than a simple net (ResNet-(2d-2) or -(2d+4) vs simple-d)",
}


@dataclass
class Verdict:
    finding: int
    step: int
    verdict: str
    evidence: str
    invariant: str = ""  # the verdict on the effective number of outliers (findings 2-4)


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
    """Spearman rank correlation with a two-sided permutation p-value (ties get mean ranks): the
    Pearson correlation of the ranks, its p-value from ``scipy.stats.pearsonr``'s permutation test
    (every ordering when there are at most N_PERMUTATIONS, else that many random ones, seeded).

    Values are compared at 12 significant digits, so rounding noise does not break true ties.
    """
    x, y = (np.array([float(f"{v:.12g}") for v in a], dtype=float) for a in (x, y))
    keep = ~(np.isnan(x) | np.isnan(y))
    rx, ry = rankdata(x[keep]), rankdata(y[keep])
    n = len(rx)
    if n < 3 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return Correlation(np.nan, np.nan, n)
    result = pearsonr(rx, ry, method=PermutationMethod(n_resamples=N_PERMUTATIONS, rng=seed))
    return Correlation(float(result.statistic), float(result.pvalue), n)


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
    rho_gap = spearman([s["depth"] for s, _ in paired], [np.log(_loss(s)) - np.log(_loss(r)) for s, r in paired])
    if rho_simple.direction() > 0 and rho_gap.direction() > 0:
        verdict = HOLDS
    elif rho_gap.direction() < 0:
        verdict = REVERSED
    else:
        verdict = UNRESOLVED
    evidence = (
        f"simple train loss vs depth: {rho_simple}; ResNet: {rho_resnet}; log(simple/ResNet) gap vs depth: {rho_gap}"
    )
    return Verdict(1, step, verdict, evidence)


def _tails_direction(simple: Sequence[dict], estimator: str) -> tuple[str, str]:
    depth = [r["depth"] for r in simple]
    corr = {s: spearman(depth, [r[f"{estimator}_{s}"] for r in simple]) for s in ("skewness", "kurtosis")}
    directions = frozenset(c.direction() for c in corr.values())
    verdict = {frozenset({1}): HOLDS, frozenset({-1}): REVERSED}.get(directions, UNRESOLVED)
    return verdict, "; ".join(f"{s} vs depth {c}" for s, c in corr.items())


def _with_check(finding: int, step: int, judge) -> Verdict:
    """A verdict by the primary estimator, with the check estimator's verdict beside it."""
    verdict, evidence = judge(PRIMARY)
    check, check_evidence = judge(CHECK)
    agree = "agrees" if check == verdict else f"**disagrees: {check}**"
    evidence = f"{ESTIMATOR_NAMES[PRIMARY]}: {evidence}. {ESTIMATOR_NAMES[CHECK]} {agree}: {check_evidence}"
    return Verdict(finding, step, verdict, evidence)


def _with_invariant(verdict: Verdict, invariant: str, evidence: str) -> Verdict:
    verdict.invariant = invariant
    verdict.evidence += f" Effective outliers P/kurtosis ({ESTIMATOR_NAMES[PRIMARY]}): {evidence}"
    return verdict


def tails_verdict(rows: Sequence[dict], step: int) -> Verdict:
    """Finding 2 from the per-run table at ``step``."""
    simple = [r for r in _at(rows, step, "simple") if not r["diverged"]]
    verdict = _with_check(2, step, lambda e: _tails_direction(simple, e))
    corr = spearman([r["depth"] for r in simple], [r[f"{PRIMARY}_outliers"] for r in simple])
    invariant = {-1: HOLDS, 1: REVERSED}.get(corr.direction(), UNRESOLVED)
    return _with_invariant(verdict, invariant, f"vs depth {corr}.")


def _pairs(rows: Sequence[dict], step: int, partner) -> list[tuple[dict, dict]]:
    """(simple run, ResNet run) of the same seed, ResNet depth in ``partner(simple depth)``."""
    resnet = {(r["depth"], r["seed"]): r for r in _at(rows, step, "resnet") if not r["diverged"]}
    return [
        (s, resnet[d, s["seed"]])
        for s in _at(rows, step, "simple")
        if not s["diverged"]
        for d in partner(s["depth"])
        if (d, s["seed"]) in resnet
    ]


def _paired_direction(pairs: Sequence[tuple[dict, dict]], estimator: str) -> tuple[str, str]:
    results = {}
    for stat in ("skewness", "kurtosis"):
        both = np.array([(s[f"{estimator}_{stat}"], r[f"{estimator}_{stat}"]) for s, r in pairs]).reshape(-1, 2)
        results[stat] = paired_comparison(both[:, 0], both[:, 1], scale_of(stat), 1 - ALPHA)
    directions = frozenset(c.direction for c in results.values())
    verdict = {frozenset({1}): HOLDS, frozenset({-1}): REVERSED}.get(directions, UNRESOLVED)
    return verdict, "; ".join(f"{stat} simple/ResNet {c}" for stat, c in results.items())


def _paired_outliers(verdict: Verdict, pairs: Sequence[tuple[dict, dict]]) -> Verdict:
    both = np.array([(r[f"{PRIMARY}_outliers"], s[f"{PRIMARY}_outliers"]) for s, r in pairs]).reshape(-1, 2)
    result = paired_comparison(both[:, 0], both[:, 1], "log", 1 - ALPHA)
    invariant = {1: HOLDS, -1: REVERSED}.get(result.direction, UNRESOLVED)
    return _with_invariant(verdict, invariant, f"ResNet/simple {result}.")


def _pair_names(pairs: Sequence[tuple[dict, dict]]) -> str:
    names = sorted({(s["depth"], r["depth"]) for s, r in pairs})
    return ", ".join(f"{model_label('simple', a)}/{model_label('resnet', b)}" for a, b in names) or "none"


def residual_verdict(rows: Sequence[dict], step: int) -> Verdict:
    """Finding 3 from the per-run table at ``step``: same depth, same seed."""
    pairs = _pairs(rows, step, lambda d: [d])
    verdict = _with_check(3, step, lambda e: _paired_direction(pairs, e))
    verdict.evidence = f"depths {sorted({s['depth'] for s, _ in pairs}) or 'none'}. " + verdict.evidence
    return _paired_outliers(verdict, pairs)


def cross_depth_verdict(rows: Sequence[dict], step: int) -> Verdict:
    """Finding 4 from the per-run table at ``step``: simple-d vs ResNet-(2d-2) and -(2d+4)."""
    pairs = _pairs(rows, step, lambda d: [2 * d - 2, 2 * d + 4])
    verdict = _with_check(4, step, lambda e: _paired_direction(pairs, e))
    verdict.evidence = f"{_pair_names(pairs)}. " + verdict.evidence
    return _paired_outliers(verdict, pairs)


def verdicts(rows: Sequence[dict]) -> list[Verdict]:
    """All four findings at every step of the per-run table."""
    out = []
    for step in sorted({r["step"] for r in rows}):
        out += [
            training_verdict(rows, step),
            tails_verdict(rows, step),
            residual_verdict(rows, step),
            cross_depth_verdict(rows, step),
        ]
    return out


CURVATURE_RULES = f"""\
From the curvature table (Hutchinson moments; models seeds-averaged by the rule above). A
block is the diagonal block of the Hessian for one group of parameters: the input convolution
with its BatchNorm, each of the three stages, the classifier. The Gauss-Newton part
G = J^T H_z J (J: Jacobian of the logits, H_z: Hessian of the loss in the logits) and the
Hessian H have their moments from the same probes. G has rank at most N(C-1) (N Hessian
samples, C classes): where that is below the parameter count most of its eigenvalues are 0 and
its kurtosis is large by construction, so G is compared across architectures, not with H.

- **Which block carries the outliers:** the block with the largest kurtosis of each model.
- **Simple / ResNet, per part:** the paired log-ratio log(simple / ResNet) of the part's
  kurtosis, same depth and seed, as in finding 3 (Student-t interval of the mean at
  {1 - ALPHA:.0%}; diverged runs left out).
- **Is it the Gauss-Newton part that skip connections damp?** *Yes* when the simple / ResNet
  ratio of G's kurtosis lies above 1, *no (reversed)* when below 1, else *not resolved at this
  scale*. Whether G is damped more or less than H: the paired log-ratio, over the same pairs,
  of G's simple / ResNet ratio to H's (above 1: G damped more).
"""
PART_NAMES = {**{f"block_{b}": f"block {b}" for b in BLOCKS}, "hessian": "H", "gauss_newton": "G (Gauss-Newton)"}


def heaviest_block(row: dict) -> str | None:
    """The block with the largest kurtosis in a curvature row; None when there is none."""
    kurtosis = {b: row[f"block_{b}_kurtosis"] for b in BLOCKS}
    kurtosis = {b: k for b, k in kurtosis.items() if np.isfinite(k)}
    return max(kurtosis, key=kurtosis.get) if kurtosis and not row["diverged"] else None


def _kurtosis_pairs(pairs: Sequence[tuple[dict, dict]], part: str) -> list[tuple[float, float]]:
    both = [(s[f"{part}_kurtosis"], r[f"{part}_kurtosis"]) for s, r in pairs]
    return [(a, b) for a, b in both if a > 0 and b > 0]


def part_ratios(rows: Sequence[dict], step: int) -> dict[str, PairedComparison]:
    """Per part of the curvature table with values at ``step``: paired simple / ResNet kurtosis
    (same depth and seed)."""
    pairs = _pairs(rows, step, lambda d: [d])
    out = {}
    for part in PART_NAMES:
        both = _kurtosis_pairs(pairs, part)
        if both:
            out[part] = paired_comparison([a for a, _ in both], [b for _, b in both], "log", 1 - ALPHA)
    return out


def gauss_newton_answer(rows: Sequence[dict], step: int) -> tuple[str, str]:
    """(answer, evidence) to "is it the Gauss-Newton part that skip connections damp?" at ``step``."""
    pairs = [
        (s, r)
        for s, r in _pairs(rows, step, lambda d: [d])
        if all(x[f"{p}_kurtosis"] > 0 for x in (s, r) for p in GN_PARTS)
    ]
    simple = {p: np.array([s[f"{p}_kurtosis"] for s, _ in pairs]) for p in GN_PARTS}
    resnet = {p: np.array([r[f"{p}_kurtosis"] for _, r in pairs]) for p in GN_PARTS}
    g = paired_comparison(simple["gauss_newton"], resnet["gauss_newton"], "log", 1 - ALPHA)
    h = paired_comparison(simple["hessian"], resnet["hessian"], "log", 1 - ALPHA)
    versus = paired_comparison(
        simple["gauss_newton"] / resnet["gauss_newton"], simple["hessian"] / resnet["hessian"], "log", 1 - ALPHA
    )
    answer = {1: "yes", -1: "no (reversed)"}.get(g.direction, UNRESOLVED)
    if g.direction > 0 and versus.direction:
        answer += ", G more than H" if versus.direction > 0 else ", G less than H"
    evidence = f"simple/ResNet kurtosis of G: {g}; of H: {h}; G's ratio over H's: {versus}"
    return answer, evidence
