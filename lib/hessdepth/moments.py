"""Spectral moments: Gauss quadrature moments, Hutchinson's estimator, and summary statistics.

Every estimator here yields per-probe raw moments m_k = (1/n) v'H^k v (|v|^2 = n), whose mean
over probes is unbiased for (1/n) tr(H^k) = E[lambda^k] over the eigenvalue distribution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.special import ndtri
from tqdm import tqdm

from .probes import DEFAULT_LOCKSTEP, lockstep_size, probe_vector
from .operator import Operator, check_operator, multiply_rows

STATS = ("mean", "std", "skewness", "kurtosis")
CI_METHODS = ("bootstrap", "delta")


def quadrature_moments(nodes: np.ndarray, weights: np.ndarray, kmax: int = 4) -> np.ndarray:
    """(P, kmax): sum_j w_j theta_j^k for k = 1..kmax, per probe (row); zero-weight padding ignored."""
    nodes, weights = np.atleast_2d(nodes), np.atleast_2d(weights)
    theta = np.where(weights > 0, nodes, 0.0)
    return np.stack([(weights * theta**k).sum(axis=1) for k in range(1, kmax + 1)], axis=1)


@dataclass
class HutchinsonResult:
    """Per Rademacher probe v (rows, in the order of ``indices``): ``probe_values`` =
    (v'Hv, |Hv|^2, (Hv)'H(Hv), |H^2 v|^2) / n, i.e. v'H^k v / n for k = 1..4; their
    ``estimate`` (mean) of (1/n) tr(H^k) and its ``stderr`` (sample std / sqrt(P))."""

    probe_values: np.ndarray
    estimate: np.ndarray
    stderr: np.ndarray
    indices: np.ndarray
    seconds: np.ndarray


def hutchinson_moments(
    op: Operator,
    probes: int = 64,
    seed: int = 0,
    *,
    indices: Sequence[int] | None = None,
    callback: Callable[[int, dict], None] | None = None,
    lockstep: int | str = DEFAULT_LOCKSTEP,
    progress: bool = False,
) -> HutchinsonResult:
    """Hutchinson estimates of (1/n) tr(H^k), k = 1..4, from two products per Rademacher probe.

    Probes are ``probe_vector(n, seed, i, "rademacher")``; ``indices``, ``callback(i, {"values":
    row})``, ``lockstep`` (probes through ``op.matmat`` together) and ``progress`` work as in
    :func:`hessdepth.slq`.
    """
    check_operator(op)
    indices = list(range(probes)) if indices is None else [int(i) for i in indices]
    if not indices:
        raise ValueError(f"need at least one probe, got indices={indices}")
    n = op.num_params
    size = lockstep_size(op, len(indices), lockstep, bytes_per_probe=3 * n * 8)
    values, seconds = [], []
    groups = [indices[s : s + size] for s in range(0, len(indices), size)]
    for group in tqdm(groups, desc="hutchinson probe groups", unit="group", leave=False, disable=not progress):
        tic = time.perf_counter()
        V = torch.stack([probe_vector(n, seed, i, device=op.device) for i in group])
        HV = multiply_rows(op, V)
        HHV = multiply_rows(op, HV)
        rows = torch.stack([(V * HV).sum(1), (HV * HV).sum(1), (HV * HHV).sum(1), (HHV * HHV).sum(1)], 1) / n
        elapsed = (time.perf_counter() - tic) / len(group)
        for i, row in zip(group, rows.cpu().numpy()):
            values.append(row)
            seconds.append(elapsed)
            if callback is not None:
                callback(i, {"values": row})
    values = np.array(values)
    stderr = values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.full(4, np.nan)
    return HutchinsonResult(values, values.mean(axis=0), stderr, np.array(indices, np.int64), np.array(seconds))


def _stats(m1, m2, m3, m4):
    """(mean, std, skewness, kurtosis) of a distribution from its raw moments (numpy or torch)."""
    var = m2 - m1**2
    c3 = m3 - 3 * m1 * m2 + 2 * m1**3
    c4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
    return m1, var**0.5, c3 / var**1.5, c4 / var**2


def _resampled_stats(moments: np.ndarray, axis: int) -> np.ndarray:
    """(mean, std, skewness, kurtosis) of each resample's probe-averaged moments: ``moments`` is
    (4, resamples, probes) as ``scipy.stats.bootstrap`` passes it, the result (4, resamples)."""
    return np.stack(_stats(*moments.mean(axis=axis)))


def spectral_stats(
    per_probe_moments: np.ndarray,
    confidence: float = 0.95,
    method: str = "bootstrap",
    seed: int = 0,
    resamples: int = 2000,
) -> dict[str, tuple[float, float, float]]:
    """Mean, std, skewness and (non-excess) kurtosis of the eigenvalue distribution, with intervals.

    ``per_probe_moments`` (P, >=4): raw moments m1..m4 per probe (quadrature moments of SLQ
    probes, or Hutchinson ``probe_values``). The statistics are functions of the probe-averaged
    moments: skewness = E[(l-mu)^3]/sigma^3, kurtosis = E[(l-mu)^4]/sigma^4 (3 for a Gaussian).
    Each maps to (value, lo, hi), a ``confidence`` interval for the probe sampling error:
    ``"bootstrap"`` resamples the P probes with replacement ``resamples`` times (seeded by
    ``seed``) and takes percentile intervals of the recomputed statistics (``scipy.stats.bootstrap``); ``"delta"`` is
    value +- z * standard error, linearising the statistic around the averaged moments with
    the sample covariance of the per-probe moments. With fewer than 2 probes lo = hi = NaN.
    Both are large-sample intervals: with 32 probes of a heavy-tailed test spectrum, nominal
    95% intervals covered the true value in 90-93% of 400 repetitions (tests/test_moments.py).
    """
    if method not in CI_METHODS:
        raise ValueError(f"method must be one of {CI_METHODS}, got {method!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    moments = np.asarray(per_probe_moments, dtype=np.float64)
    if moments.ndim != 2 or moments.shape[1] < 4 or len(moments) == 0:
        raise ValueError(f"need per-probe raw moments of shape (P, >=4), got {moments.shape}")
    moments = moments[:, :4]
    mean = moments.mean(axis=0)
    value = np.array(_stats(*mean))
    P = len(moments)
    if P < 2:
        lo = hi = np.full(4, np.nan)
    elif method == "bootstrap":
        from scipy.stats import bootstrap  # here: importing scipy.stats adds 0.5 s to every job's start

        with np.errstate(invalid="ignore"):
            ci = bootstrap(
                (moments,),
                _resampled_stats,
                n_resamples=resamples,
                confidence_level=confidence,
                method="percentile",
                axis=0,
                rng=seed,
            ).confidence_interval
        lo, hi = ci.low, ci.high
    else:
        jac = torch.autograd.functional.jacobian(lambda m: torch.stack(_stats(*m)), torch.as_tensor(mean)).numpy()
        cov = np.cov(moments, rowvar=False, ddof=1) / P
        half = ndtri((1 + confidence) / 2) * np.sqrt(np.diag(jac @ cov @ jac.T))
        lo, hi = value - half, value + half
    return {name: (float(value[i]), float(lo[i]), float(hi[i])) for i, name in enumerate(STATS)}
