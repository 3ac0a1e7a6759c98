"""Random probe vectors, and how many probes run through one pass over the data.

Stochastic Lanczos quadrature and Hutchinson's estimator both average over random probes; a
probe depends only on (n, seed, index, kind), so probes can be computed, and resumed, in any
order and on any device.
"""

from __future__ import annotations

import numpy as np
import torch

from .operator import Operator

PROBE_KINDS = ("rademacher", "gaussian")
# Probes per pass over the data. "auto": all probes in lockstep (as many as LOCKSTEP_MEMORY_GB of
# Lanczos bases allow) when the operator's matmat shares each batch's first-order graph among its
# rows (uncached double_backward: the paper's full-training-set products, bench/RESULTS.md "Shared
# graphs"), else one at a time: with a kept graph, lockstep is slower per probe-step than one
# at a time (bench/RESULTS.md "lockstep").
DEFAULT_LOCKSTEP = "auto"
LOCKSTEP_MEMORY_GB = 4.0


def lockstep_size(op: Operator, probes: int, lockstep: int | str = DEFAULT_LOCKSTEP, bytes_per_probe: int = 0) -> int:
    """How many probes to run through one pass over the data: ``lockstep`` itself, or for "auto"
    ``probes`` (at most as many as ``LOCKSTEP_MEMORY_GB`` holds at ``bytes_per_probe``) when the
    operator shares graphs among a matmat's rows, else 1."""
    if lockstep == "auto":
        if not op.shares_graphs:
            return 1
        fits = int(LOCKSTEP_MEMORY_GB * 2**30 // bytes_per_probe) if bytes_per_probe else probes
        return max(1, min(probes, fits))
    if not isinstance(lockstep, int) or isinstance(lockstep, bool) or lockstep < 1:
        raise ValueError(f"lockstep must be 'auto' or an integer >= 1, got {lockstep!r}")
    return lockstep


def probe_vector(
    n: int,
    seed: int,
    index: int,
    kind: str = "rademacher",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Probe ``index`` of the family ``seed``: n entries +-1 (Rademacher) or N(0, 1), not normalised.

    It depends only on (n, seed, index, kind) -- drawn on the CPU from a generator seeded by
    ``numpy.random.SeedSequence((seed, index))`` -- so probes can be computed, and resumed, in
    any order and on any device.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe kind must be one of {PROBE_KINDS}, got {kind!r}")
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence((seed, index)).generate_state(1, np.uint64)[0]))
    if kind == "gaussian":
        v = torch.randn(n, generator=gen, dtype=torch.float64)
    else:
        v = torch.randint(0, 2, (n,), generator=gen).double().mul_(2).sub_(1)
    return v.to(device=device, dtype=dtype)
