"""The same SLQ work done by each tool: P probes x M Lanczos steps of the Hessian of the
cross-entropy over fixed batches, BatchNorm with batch statistics, returning each probe's Gauss
nodes and weights (P, M). Moments, intervals and the density are then computed from those by the
same code for every tool (bench/peers.py), so the tools differ only in the work they do.

The peers are benchmark-only extras, installed beside this file and never project dependencies:

    .venv/bin/pip install --no-deps --target bench/.peers -r bench/peers-requirements.txt

What each does differently (read from their sources, see bench/README.md):
- hessian-eigenthings 1.0.0a5: autograd double backward per batch and product, nothing kept;
  batches weighted equally (the mean of per-batch products); full reorthogonalisation.
- curvlinops 3.0.1: forward-over-reverse (jvp of jacrev) per batch, samples weighted equally; its
  Lanczos (papyan2020traces.fast_lanczos) does not reorthogonalise. A train-mode BatchNorm model
  must have its BN modules replaced (torch.func.replace_all_batch_norm_modules_), and then torch's
  forward-over-reverse derivative through batch_norm is wrong on the BN weights' rows
  (pytorch/pytorch#196699): the accuracy table shows what that costs.
- PyHessian 0.1: double backward per batch, samples weighted equally, full reorthogonalisation,
  the tridiagonal in float32; its constructor puts the model in eval mode, so the adapter puts it
  back in train mode (batch statistics, like the others); it calls torch.eig, removed from
  PyTorch, which the adapter replaces by an eigh-based function of the same return layout.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

import hessdepth as hd
from hessdepth.hvp import DEFAULT_GRAPH_CACHE_GB

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
INSTALL = "`.venv/bin/pip install --no-deps --target bench/.peers -r bench/peers-requirements.txt`"


def _eig(T, eigenvectors=False):
    """torch.eig's return layout from torch.linalg.eigh (T is symmetric): (m, 2) real/imaginary."""
    values, vectors = torch.linalg.eigh(T)
    return torch.stack([values, torch.zeros_like(values)], 1), vectors


def peers_on_path() -> None:
    if not PEERS_DIR.exists():
        raise ImportError(f"{PEERS_DIR.name} is missing: install the peers with {INSTALL}")
    if str(PEERS_DIR) not in sys.path:
        sys.path.insert(0, str(PEERS_DIR))


def hessdepth_slq(graph_cache_gb: float) -> Callable:
    """hessdepth's default: the composition chosen by the graph cache, probes in lockstep 'auto'."""

    def run(model, batches, probes, steps, seed):
        op = hd.HessianOperator(model, batches, "batch", graph_cache_gb=graph_cache_gb)
        result = hd.slq(op, steps, probes, seed)
        return result.nodes, result.weights

    return run


def eigenthings_slq(model, batches, probes, steps, seed):
    peers_on_path()
    import hessian_eigenthings as he

    H = he.HessianOperator(copy.deepcopy(model).train(), batches, he.supervised_loss(nn.CrossEntropyLoss()))
    result = he.spectral_density(H, num_runs=probes, lanczos_steps=steps, seed=seed)
    nodes, weights = result.raw_eigenvalues.double().cpu().numpy(), result.raw_weights.double().cpu().numpy()
    return np.nan_to_num(nodes), np.where(np.isnan(nodes), 0.0, weights)  # padding: NaN nodes, weight 0


def curvlinops_slq(model, batches, probes, steps, seed):
    peers_on_path()
    import curvlinops as cl
    from curvlinops.papyan2020traces.spectrum import fast_lanczos

    replaced = copy.deepcopy(model).train()
    torch.func.replace_all_batch_norm_modules_(replaced)  # else it refuses a train-mode BN model
    params = [p for p in replaced.parameters() if p.requires_grad]
    H = cl.HessianLinearOperator(replaced, nn.CrossEntropyLoss(), params, batches, check_deterministic=False)
    torch.manual_seed(seed)  # its start vectors come from the global generator
    runs = [fast_lanczos(H, ncv=steps) for _ in range(probes)]
    nodes = np.stack([np.asarray(values, dtype=np.float64) for values, _ in runs])
    weights = np.stack([np.asarray(vectors, dtype=np.float64)[0] ** 2 for _, vectors in runs])
    return nodes, weights


def pyhessian_slq(model, batches, probes, steps, seed):
    peers_on_path()
    torch.eig = _eig  # the stub left in PyTorch only raises
    from pyhessian import hessian

    copy_ = copy.deepcopy(model)
    h = hessian(copy_, nn.CrossEntropyLoss(), dataloader=batches, cuda=False)
    copy_.train()  # its constructor chose eval mode; batch statistics like the other tools
    torch.manual_seed(seed)  # its start vectors come from the global generator
    nodes, weights = h.density(iter=steps, n_v=probes)
    return np.asarray(nodes, dtype=np.float64), np.asarray(weights, dtype=np.float64)


OURS, UNCACHED = "hessdepth", "hessdepth, graph cache off"
TOOLS = {
    OURS: hessdepth_slq(DEFAULT_GRAPH_CACHE_GB),
    UNCACHED: hessdepth_slq(0.0),  # when the batches' graphs do not fit (the paper's 50k images)
    "hessian-eigenthings 1.0.0a5": eigenthings_slq,
    "curvlinops 3.0.1": curvlinops_slq,
    "PyHessian 0.1": pyhessian_slq,
}
