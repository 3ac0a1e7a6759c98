"""Recipes for one batch's Hessian-vector product, and the cache of first-order graphs.

Each recipe takes (the batch's loss of a parameter tuple, the parameters, tangents, batched)
and returns H·tangents as a tuple like the parameters. With ``batched`` the tangents have a
leading dimension k, and all k go through one pass over the batch.
:class:`hessdepth.HessianOperator` picks one (``COMPOSITIONS``) and sums it over its batches.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import grad, jvp, vjp, vmap


def _jvp_grad(loss, params, tangents, batched):
    def hvp(t):
        return jvp(grad(loss), (params,), (t,))[1]

    return vmap(hvp)(tangents) if batched else hvp(tangents)


def _vjp_grad(loss, params, tangents, batched):
    pullback = vjp(grad(loss), params)[1]
    return (vmap(pullback)(tangents) if batched else pullback(tangents))[0]


def gradient_graph(loss, params):
    """(leaves, gradient of ``loss`` at them with its graph kept for a second backward)."""
    with torch.enable_grad():
        leaves = [p.detach().requires_grad_() for p in params]
        return leaves, torch.autograd.grad(loss(leaves), leaves, create_graph=True)


def second_backward(graph, tangents, batched, keep=False):
    leaves, grads = graph
    return torch.autograd.grad(
        grads, leaves, tangents, retain_graph=keep, is_grads_batched=batched, allow_unused=True, materialize_grads=True
    )


def _double_backward(loss, params, tangents, batched):
    if batched:  # the k tangents share the batch's first-order graph: a second backward each
        return _shared_second_backward(gradient_graph(loss, params), tangents)
    return second_backward(gradient_graph(loss, params), tangents, batched)


def _shared_second_backward(graph, tangents):
    """One first-order graph, one plain second backward per row of the batched ``tangents``
    (a loop, not vmap: bench/RESULTS.md "Shared graphs"); each row's product is computed exactly
    as one unbatched product would be."""
    k = len(tangents[0])
    rows = [second_backward(graph, tuple(t[i] for t in tangents), False, keep=i < k - 1) for i in range(k)]
    return tuple(torch.stack(parts) for parts in zip(*rows))


COMPOSITIONS = {
    "jvp_grad": "forward-over-reverse: torch.func.jvp of torch.func.grad",
    "vjp_grad": "reverse-over-reverse: torch.func.vjp of torch.func.grad (slow on CPU)",
    "double_backward": "reverse-over-reverse: torch.autograd.grad twice, create_graph=True; the rows of "
    "a matmat share each batch's first-order graph",
    "double_backward_cached": "double_backward keeping every batch's first-order graph between "
    "products (rebuilt when the parameters change): fastest, but holds all batches' graphs in memory",
}
RECIPES = {"jvp_grad": _jvp_grad, "vjp_grad": _vjp_grad, "double_backward": _double_backward}
# "auto" (the default) picks double_backward_cached when every batch's graph fits in
# ``graph_cache_gb``, else double_backward: the cache saves the forward and first backward of
# every product (bench/RESULTS.md has the measured ratios). Both double_backward compositions
# use the hand-derived second derivative of BatchNorm (hessdepth.batchnorm).
DEFAULT_COMPOSITION = "auto"
DEFAULT_GRAPH_CACHE_GB = 4.0


def saved_bytes(build: Callable) -> int:
    """Bytes of the tensors autograd saves while ``build()`` runs, each storage counted once."""
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        build()
    return sum(storages.values())


class GraphCache:
    """Every batch's first-order graph, kept while the model's parameters are unchanged."""

    def __init__(self):
        self._key, self._graphs = None, None

    def get(self, model: nn.Module, build: Callable[[], list]) -> list:
        key = [(p.data_ptr(), p._version) for p in model.parameters()]
        if key != self._key:
            self._graphs = None  # free the old graphs before building new ones
            self._graphs, self._key = build(), key
        return self._graphs
