"""Gaussian-smoothed eigenvalue density from Gauss quadrature nodes and weights (SLQ).

density(t) = (1/P) sum_probes sum_j w_j N(t; theta_j, s^2), with s^2 = sigma2 * max(1,
lambda_max - lambda_min) over all nodes (Ghorbani et al. 2019), or a width ``s`` given by the
caller, e.g. :func:`node_spacing_width`. Each probe's weights sum to 1, so the density
integrates to 1.

With m nodes per probe the paper's kernel suits m ~ 90 and ~10 probes; with fewer nodes it
draws a comb of isolated spikes. A width tied to the spacing of the nodes themselves reads as a
density at any m. :func:`cell_density` averages the density over each cell of a common grid.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_CHUNK = 1 << 22  # grid points x nodes evaluated at once


def node_spacing_width(nodes: np.ndarray, weights: np.ndarray, factor: float) -> np.ndarray:
    """Per node (shape of ``nodes``): ``factor`` times its mean distance to its neighbours in its probe.

    An adaptive kernel: where Lanczos puts its nodes close together (the bulk) the kernel is
    narrow, where they are far apart (the outliers) it is wide, so neighbouring nodes always
    overlap and the density has no comb at any number of nodes. Zero-weight entries get NaN.
    """
    nodes, weights = np.atleast_2d(nodes), np.atleast_2d(weights)
    widths = np.full(nodes.shape, np.nan)
    for p, (row, w) in enumerate(zip(nodes, weights)):
        used = np.flatnonzero(w > 0)
        order = used[np.argsort(row[used])]
        theta = row[order]
        if len(theta) < 2 or not np.isfinite(theta).all():
            raise ValueError("need at least two finite nodes per probe to measure their spacing")
        gaps = np.diff(theta)
        left, right = np.r_[gaps[0], gaps], np.r_[gaps, gaps[-1]]
        widths[p, order] = factor * (left + right) / 2
    if not (widths[weights > 0] > 0).all():
        raise ValueError("Lanczos nodes of one probe coincide: no spacing to derive a kernel from")
    return widths


def density(
    nodes: np.ndarray,
    weights: np.ndarray,
    grid: np.ndarray | None = None,
    num_points: int | None = None,
    sigma2: float = 1e-5,
    normalize: bool = False,
    width: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(grid, density) of the probe-averaged, Gaussian-smoothed spectral measure.

    ``nodes``, ``weights``: (P, m) or (m,); zero-weight entries (NaN padding) are ignored.
    ``normalize=True`` gives the density of lambda / std, the std of the (unsmoothed)
    quadrature measure, not centred (the paper's normalised plots): the same smoothed
    density with its axis divided by std and its values multiplied by std, so it still
    integrates to 1. ``width`` (eigenvalue units; one number, or one per node as from
    :func:`node_spacing_width`), when given, replaces the ``sigma2`` rule.
    ``grid`` is in the output's units (eigenvalues, or std units with
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
    if width is None:
        width = np.sqrt(sigma2 * max(1.0, lmax - lmin))
    width = np.broadcast_to(np.asarray(width, dtype=np.float64), nodes.shape)[used]
    if not (width > 0).all():
        raise ValueError(f"kernel widths must be positive, got {width.min()}")
    scale = 1.0
    if normalize:
        mean = np.dot(w, lam)
        scale = np.sqrt(max(np.dot(w, (lam - mean) ** 2), 0.0))
        if scale == 0:
            raise ValueError("cannot normalise a spectrum with zero spread")
    if grid is None:
        wide, narrow = width.max(), width.min()
        if num_points is None:
            num_points = max(1001, int(np.ceil((lmax - lmin + 12 * wide) / (narrow / 2))) + 1)
        grid = np.linspace(lmin - 6 * wide, lmax + 6 * wide, num_points) / scale
    grid = np.asarray(grid, dtype=np.float64)
    out = np.empty_like(grid)
    step = max(1, _CHUNK // len(lam))
    for start in range(0, len(grid), step):
        t = grid[start : start + step, None] * scale
        out[start : start + step] = np.exp(-0.5 * ((t - lam) / width) ** 2) @ (w / width)
    return grid, out * scale / np.sqrt(2 * np.pi)


def common_grid(grid_range: Sequence[float], grid_points: int) -> np.ndarray:
    """The shared eigenvalue grid, in units of each spectrum's standard deviation."""
    lo, hi = (float(v) for v in grid_range)
    if not hi > lo or grid_points < 2:
        raise ValueError(f"need grid_range lo < hi and grid_points >= 2, got {grid_range}, {grid_points}")
    return np.linspace(lo, hi, int(grid_points))


def cell_density(
    nodes: np.ndarray,
    weights: np.ndarray,
    grid: np.ndarray,
    sigma2: float,
    max_refine: int = 256,
    width: float | None = None,
) -> np.ndarray:
    """Std-normalised smoothed density averaged over each cell of the uniform ``grid``.

    Values at the grid points alone miss mass when the smoothing kernel is narrower than the
    spacing; each cell is sampled at 1, 4, 16 ... points until the cells hold all the mass
    (to 1%) or ``max_refine`` is reached, so the result integrates to 1 whenever the spectrum
    lies inside the grid.
    """
    spacing = grid[1] - grid[0]
    refine = 1
    while True:
        offsets = ((np.arange(refine) + 0.5) / refine - 0.5) * spacing
        _, fine = density(
            nodes, weights, grid=(grid[:, None] + offsets).ravel(), sigma2=sigma2, normalize=True, width=width
        )
        cells = fine.reshape(len(grid), refine).mean(axis=1)
        if abs(cells.sum() * spacing - 1) < 0.01 or refine >= max_refine:
            return cells
        refine *= 4
