"""Gaussian-smoothed eigenvalue density from Gauss quadrature nodes and weights (SLQ).

density(t) = (1/P) sum_probes sum_j w_j N(t; theta_j, s^2), with s^2 = sigma2 * max(1,
lambda_max - lambda_min) over all nodes (Ghorbani et al. 2019). Each probe's weights sum to 1,
so the density integrates to 1.
"""
from __future__ import annotations

import numpy as np

_CHUNK = 1 << 22  # grid points x nodes evaluated at once


def density(
    nodes: np.ndarray,
    weights: np.ndarray,
    grid: np.ndarray | None = None,
    num_points: int | None = None,
    sigma2: float = 1e-5,
    normalize: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(grid, density) of the probe-averaged, Gaussian-smoothed spectral measure.

    ``nodes``, ``weights``: (P, m) or (m,); zero-weight entries (NaN padding) are ignored.
    ``normalize=True`` gives the density of lambda / std, the std of the (unsmoothed)
    quadrature measure, not centred (the paper's normalised plots): the same smoothed
    density with its axis divided by std and its values multiplied by std, so it still
    integrates to 1. ``grid`` is in the output's units (eigenvalues, or std units with
    ``normalize``); by default ``num_points`` (default: spacing <= kernel width / 2, at least
    1001) span the nodes +- 6 kernel widths.
    """
    nodes, weights = np.atleast_2d(nodes), np.atleast_2d(weights)
    used = weights > 0
    lam, w = nodes[used], weights[used]
    if not len(lam) or not np.isfinite(lam).all():
        raise ValueError("need finite nodes with positive weights")
    w = w / w.sum()
    lmin, lmax = lam.min(), lam.max()
    width = np.sqrt(sigma2 * max(1.0, lmax - lmin))
    scale = 1.0
    if normalize:
        mean = np.dot(w, lam)
        scale = np.sqrt(max(np.dot(w, (lam - mean) ** 2), 0.0))
        if scale == 0:
            raise ValueError("cannot normalise a spectrum with zero spread")
    if grid is None:
        if num_points is None:
            num_points = max(1001, int(np.ceil((lmax - lmin + 12 * width) / (width / 2))) + 1)
        grid = np.linspace(lmin - 6 * width, lmax + 6 * width, num_points) / scale
    grid = np.asarray(grid, dtype=np.float64)
    out = np.empty_like(grid)
    step = max(1, _CHUNK // len(lam))
    for start in range(0, len(grid), step):
        t = grid[start : start + step, None] * scale
        out[start : start + step] = np.exp(-0.5 * ((t - lam) / width) ** 2) @ w
    return grid, out * scale / (width * np.sqrt(2 * np.pi))
