"""Float64 Lanczos with full reorthogonalisation, and stochastic Lanczos quadrature (SLQ).

For a unit probe q and the m x m Lanczos tridiagonal T started from it, the Gauss quadrature
with nodes = eigenvalues of T and weights = squared first components of its eigenvectors
integrates polynomials of degree <= 2m-1 exactly against q's spectral measure:
sum_j w_j theta_j^k = q' H^k q. Averaged over random probes this estimates the eigenvalue
density (1/n) sum_i delta(lambda - lambda_i).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from tqdm import tqdm

from .operator import Operator, OperatorError, check_operator, multiply_rows
from .probes import DEFAULT_LOCKSTEP, lockstep_size, probe_vector


def _lanczos_lockstep(
    op: Operator, iterations: int, starts: torch.Tensor, tol: float | None = None, on_step: Callable | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Independent Lanczos runs, one per row of ``starts``, sharing each pass over the data.

    Returns per run (alpha, beta); a run whose residual falls below ``tol`` times the running
    bound on |T| (invariant subspace found) stops there: len(alpha) = steps, len(beta) = steps - 1.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    tol = 100 * torch.finfo(op.dtype).eps if tol is None else tol
    k, n = starts.shape
    start_norms = torch.stack([start.to(torch.float64).norm() for start in starts])
    if not (torch.isfinite(start_norms).all() and (start_norms > 0).all()):
        raise ValueError("Lanczos start vectors must be finite and nonzero")
    # One allocation per run: BLAS results can depend on a vector's memory alignment (MKL on AMD
    # does), so each run's arithmetic is the same as running it alone.
    basis = [torch.zeros(iterations, n, dtype=torch.float64, device=op.device) for _ in range(k)]
    for b, start, norm in zip(basis, starts, start_norms):
        b[0] = start.to(op.device, torch.float64) / norm
    alphas, betas = [[] for _ in range(k)], [[] for _ in range(k)]
    norms = [0.0] * k  # running Gershgorin bound on |T|, the scale of the breakdown test
    live = list(range(k))
    for j in range(iterations):
        W = multiply_rows(op, torch.stack([basis[p][j] for p in live]))
        still = []
        for row, p in zip(W, live):
            w = row.clone()  # its own allocation: see the basis above
            Q = basis[p][: j + 1]
            alphas[p].append(torch.dot(Q[j], w).item())
            for _ in range(2):  # full reorthogonalisation, twice (classical Gram-Schmidt)
                w -= Q.T @ (Q @ w)
            b = w.norm().item()
            if not np.isfinite([alphas[p][-1], b]).all():
                raise OperatorError(f"NaN/Inf in Lanczos step {j + 1}: the operator returned non-finite values")
            norms[p] = max(norms[p], abs(alphas[p][-1]) + (betas[p][-1] if betas[p] else 0.0) + b)
            if j + 1 < iterations and b > tol * norms[p]:  # else: breakdown, or done
                betas[p].append(b)
                basis[p][j + 1] = w / b
                still.append(p)
        if on_step is not None:
            on_step(len(live))
        live = still
        if not live:
            break
    return [(np.array(a), np.array(b)) for a, b in zip(alphas, betas)]


def lanczos(op: Operator, iterations: int, v0: torch.Tensor, tol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``iterations`` Lanczos steps from ``v0`` in float64 with full reorthogonalisation (twice).

    Products go through the operator's dtype (v converted to it and back); the basis lives on
    the operator's device. Returns the tridiagonal's diagonal ``alpha`` (m,) and off-diagonal
    ``beta`` (m-1,); on breakdown (an off-diagonal below ``tol`` times the running norm of T,
    default 100 machine epsilons of the operator's dtype) both are shorter.
    """
    check_operator(op)
    v0 = torch.as_tensor(v0)
    return _lanczos_lockstep(op, iterations, v0.reshape(1, -1), tol)[0]


def gauss_quadrature(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (eigenvalues of T) and weights (squared first eigenvector components, sum 1)."""
    nodes, vectors = eigh_tridiagonal(alpha, beta)
    return nodes, vectors[0] ** 2


@dataclass
class SLQResult:
    """Per probe (rows, in the order of ``indices``): tridiagonal and Gauss quadrature.

    Rows shorter than ``iterations`` (breakdown) are padded with NaN in alpha/beta/nodes and 0
    in weights; ``steps`` is each row's Lanczos length. ``seconds`` is each probe's wall time
    (probes run in lockstep share their group's time equally). ``basis_bytes`` is the memory
    of the Lanczos basis held at once (one lockstep group's).
    """

    alpha: np.ndarray
    beta: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    steps: np.ndarray
    seconds: np.ndarray
    indices: np.ndarray
    basis_bytes: int

    @property
    def breakdown(self) -> bool:
        return bool((self.steps < self.alpha.shape[1]).any())


def _padded_row(alpha: np.ndarray, beta: np.ndarray, iterations: int, seconds: float) -> dict:
    """One probe's arrays at full length. After a breakdown (``steps`` < ``iterations``) the
    tridiagonal is extended by a decoupled diagonal (beta 0) holding its largest node, with weight
    0: the padded (alpha, beta) still give the padded (nodes, weights), and max/min of the nodes
    are the spectrum's, never NaN."""
    nodes, weights = gauss_quadrature(alpha, beta)
    s, top = len(alpha), nodes.max()

    def pad(x, size, fill):
        return np.concatenate([x, np.full(size - len(x), fill)])

    return dict(
        alpha=pad(alpha, iterations, top),
        beta=pad(beta, iterations - 1, 0.0),
        nodes=pad(nodes, iterations, top),
        weights=pad(weights, iterations, 0.0),
        steps=np.int64(s),
        seconds=np.float64(seconds),
    )


def slq(
    op: Operator,
    iterations: int = 90,
    probes: int = 10,
    seed: int = 0,
    *,
    kind: str = "rademacher",
    indices: Sequence[int] | None = None,
    callback: Callable[[int, dict], None] | None = None,
    lockstep: int | str = DEFAULT_LOCKSTEP,
    tol: float | None = None,
    progress: bool = False,
) -> SLQResult:
    """Stochastic Lanczos quadrature: one Lanczos run per probe ``probe_vector(n, seed, i, kind)``.

    ``indices`` picks which probes to run (default ``range(probes)``); ``callback(i, row)`` is
    called as each finishes with a dict of that probe's padded ``alpha``, ``beta``, ``nodes``,
    ``weights``, ``steps``, ``seconds`` -- save it to resume later with the missing indices,
    which gives the same rows as one full run. ``lockstep`` probes run together through
    ``op.matmat`` (one pass over the data per step, ``lockstep`` bases in memory; "auto":
    :func:`lockstep_size`); results equal one-at-a-time up to rounding (bitwise, with a
    shared-graph operator on the CPU). ``progress`` shows a tqdm bar of Lanczos steps on stderr.
    """
    check_operator(op)
    indices = list(range(probes)) if indices is None else [int(i) for i in indices]
    if not indices:
        raise ValueError(f"need at least one probe, got indices={indices}")
    n = op.num_params
    size = lockstep_size(op, len(indices), lockstep, bytes_per_probe=iterations * n * 8)
    rows = []
    bar = tqdm(total=len(indices) * iterations, desc="lanczos steps", unit="step", leave=False, disable=not progress)
    with bar:
        for start in range(0, len(indices), size):
            group = indices[start : start + size]
            tic = time.perf_counter()
            starts = torch.stack([probe_vector(n, seed, i, kind, device=op.device) for i in group])
            runs = _lanczos_lockstep(op, iterations, starts, tol, on_step=bar.update)
            seconds = (time.perf_counter() - tic) / len(group)
            for i, (alpha, beta) in zip(group, runs):
                rows.append(_padded_row(alpha, beta, iterations, seconds))
                if callback is not None:
                    callback(i, rows[-1])
    return SLQResult(
        **{key: np.stack([row[key] for row in rows]) for key in rows[0]},
        indices=np.array(indices, dtype=np.int64),
        basis_bytes=min(size, len(indices)) * iterations * n * 8,
    )
