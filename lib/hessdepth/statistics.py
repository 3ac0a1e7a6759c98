"""Statistics across training seeds, on the scale that fits each quantity.

Kurtosis is positive (>= 1) and heavy-tailed and varies multiplicatively across seeds: it is
averaged and bounded on the log scale. Skewness is heavy-tailed too but can take either sign
(early in training the largest outliers may be negative): it is averaged on the asinh scale, a
signed log (asinh(x) ~ sign(x) log(2|x|) for |x| >> 1, ~ x near 0), so that far from zero it
behaves like the log scale and its intervals do not cross zero unless the seeds do. Every
interval is a Student-t interval of the mean on that scale, mapped back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import ndtri, stdtr, stdtrit  # not scipy.stats: 0.5 s more at every job's start

SCALES = {
    "linear": (lambda x: x, lambda x: x),
    "log": (np.log, np.exp),
    "asinh": (np.arcsinh, np.sinh),
}
POWER = 0.8


def t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (at least two)."""
    values = np.asarray(values, dtype=float)
    half = stdtrit(len(values) - 1, 0.5 + confidence / 2) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def seed_average(values: Sequence[float], confidence: float, scale: str = "linear") -> tuple[float, float, float]:
    """(value, lo, hi): the mean of ``values`` on ``scale`` and its t-interval, mapped back.

    On the log scale this is the geometric mean; a log scale asked of values that are not all
    positive falls back to the asinh scale.
    """
    values = np.asarray(values, dtype=float)
    if scale == "log" and not (values > 0).all():
        scale = "asinh"
    forward, back = SCALES[scale]
    x = forward(values)
    lo, hi = t_interval(x, confidence)
    return float(back(x.mean())), float(back(lo)), float(back(hi))


@dataclass
class PairedComparison:
    """Mean of paired differences f(a) - f(b) on a scale f, its t-interval, p-value and power."""

    scale: str
    n: int
    mean: float
    lo: float
    hi: float
    p: float
    pairs_for_power: float

    @property
    def direction(self) -> int:
        """+1 / -1 when the interval lies wholly above / below 0, else 0."""
        return 1 if self.lo > 0 else -1 if self.hi < 0 else 0

    def __str__(self) -> str:
        if self.n < 2 or not np.isfinite(self.lo):
            return f"n={self.n} pairs, undecidable"
        need = "inf" if not np.isfinite(self.pairs_for_power) else f"{self.pairs_for_power:.0f}"
        if self.scale == "log":
            effect = f"ratio {math.exp(self.mean):.3g} [{math.exp(self.lo):.3g}, {math.exp(self.hi):.3g}]"
        else:
            effect = f"{self.scale} difference {self.mean:+.3g} [{self.lo:+.3g}, {self.hi:+.3g}]"
        return f"{effect}, p={self.p:.2g}, n={self.n} pairs ({need} for {POWER:.0%} power)"


def paired_comparison(
    a: Sequence[float], b: Sequence[float], scale: str = "log", confidence: float = 0.95
) -> PairedComparison:
    """Paired comparison of a with b on ``scale``: the t-interval of mean(f(a) - f(b)), its
    two-sided p-value, and the pairs that would give :data:`POWER` at that mean and spread
    (normal approximation). On the log scale the mean maps back to a ratio a / b."""
    forward, _ = SCALES[scale]
    d = forward(np.asarray(a, dtype=float)) - forward(np.asarray(b, dtype=float))
    n = len(d)
    if n < 2:
        return PairedComparison(scale, n, float(d.mean()) if n else np.nan, np.nan, np.nan, np.nan, np.nan)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return PairedComparison(scale, n, mean, mean, mean, 0.0 if mean else 1.0, float(n) if mean else np.inf)
    lo, hi = t_interval(d, confidence)
    p = float(2 * stdtr(n - 1, -abs(mean) / (sd / math.sqrt(n))))
    z = ndtri(1 - (1 - confidence) / 2) + ndtri(POWER)
    need = math.ceil((z * sd / abs(mean)) ** 2) if mean else np.inf
    return PairedComparison(scale, n, mean, lo, hi, p, need)
