"""The Hessian of the training loss over fixed batches, as a linear operator."""

from __future__ import annotations

import copy
from typing import Iterator, Sequence

import torch
from torch import nn

from .hvp import (
    COMPOSITIONS,
    DEFAULT_COMPOSITION,
    DEFAULT_GRAPH_CACHE_GB,
    RECIPES,
    GraphCache,
    gradient_graph,
    saved_bytes,
    second_backward,
)
from .loss_operator import LossOperator
from .operator import LinearOperator


class HessianOperator(LossOperator):
    """Hessian of the mean cross-entropy over all samples of ``batches`` at the current parameters
    (batches, loss, ``bn_mode`` and accumulation as :class:`~hessdepth.LossOperator`).

    ``composition`` picks how one batch's Hessian-vector product is built (``COMPOSITIONS``
    describes each, :mod:`hessdepth.hvp` holds them). ``"auto"`` resolves at construction, by the
    saved-tensor bytes of the first batch's graph scaled to all samples, to
    ``double_backward_cached`` when they fit in ``graph_cache_gb`` GiB, else to
    ``double_backward``; ``composition`` then names the choice and ``graph_bytes`` the estimate.
    All compositions agree with a finite-difference-checked Hessian through train-mode
    BatchNorm. ``torch.func.hessian``, ``jacrev(jacrev)`` and ``grad(jvp)`` do not, so they
    are not offered.
    """

    product_name = "Hessian-vector product"

    def __init__(
        self,
        model: nn.Module,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        bn_mode: str = "batch",
        composition: str = DEFAULT_COMPOSITION,
        graph_cache_gb: float = DEFAULT_GRAPH_CACHE_GB,
    ):
        if composition != "auto" and composition not in COMPOSITIONS:
            raise ValueError(f"composition must be 'auto' or one of {tuple(COMPOSITIONS)}, got {composition!r}")
        super().__init__(model, batches, bn_mode)
        self._graph_cache = GraphCache()  # used by "double_backward_cached"
        self.graph_bytes = None
        if composition == "auto":
            self.graph_bytes = self._estimate_graph_bytes()
            fits = self.graph_bytes <= graph_cache_gb * 2**30
            composition = "double_backward_cached" if fits else "double_backward"
        self.composition = composition  # fixed from here on

    @property
    def fast_bn(self) -> bool:
        """The double_backward compositions use BatchNorm's hand-derived second derivative."""
        return self.composition.startswith("double_backward")

    @property
    def shares_graphs(self) -> bool:
        """Whether the rows of a :meth:`matmat` share each batch's forward pass and first backward
        (composition double_backward), so that probes run in lockstep cost less per product."""
        return self.composition == "double_backward"

    def _estimate_graph_bytes(self) -> int:
        """Memory all batches' first-order graphs would keep, from the first batch's saved tensors."""
        x, y = self.batches[0]
        with self._mode(fast_bn=True):  # the graph double_backward would keep
            first = saved_bytes(lambda: gradient_graph(self._batch_loss(x, y), self._params()))
        return first * self.num_samples // len(y)

    def _batch_products(self, tangents, batched: bool) -> Iterator[tuple[torch.Tensor, ...]]:
        """Each batch's Hessian times the tangents, by the chosen composition: with
        double_backward the rows of a matmat share each batch's first-order graph, else vmap
        over tangents."""
        if self.composition == "double_backward_cached":
            for graph in self._graphs():
                yield second_backward(graph, tangents, batched, keep=True)
        else:
            hvp, params = RECIPES[self.composition], self._params()
            for x, y in self.batches:
                yield hvp(self._batch_loss(x, y), params, tangents, batched)

    def _graphs(self) -> list:
        """Every batch's first-order graph, kept while the parameters are unchanged."""
        params = self._params()
        return self._graph_cache.get(
            self.model, lambda: [gradient_graph(self._batch_loss(x, y), params) for x, y in self.batches]
        )

    def _uncached(self) -> HessianOperator:
        """This operator building every product's graphs anew (itself when it keeps none), for
        the checks: a kept graph would freeze randomness they must see."""
        if self.composition != "double_backward_cached":
            return self
        view = copy.copy(self)
        view.composition, view._graph_cache = "double_backward", GraphCache()
        return view

    def check_symmetry(self, seed: int = 0, rtol: float | None = None) -> float:
        """:meth:`LinearOperator.check_symmetry` on graphs built anew for each product."""
        return LinearOperator.check_symmetry(self._uncached(), seed, rtol)

    def check_repeatability(self, seed: int = 0, rtol: float | None = None) -> float:
        """:meth:`LinearOperator.check_repeatability` on graphs built anew for each product."""
        return LinearOperator.check_repeatability(self._uncached(), seed, rtol)
