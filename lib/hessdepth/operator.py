"""The Hessian of the training loss over a fixed list of batches, as a linear operator.

Vectors are 1-D tensors over all parameters, flattened in ``model.parameters()`` order.
:class:`HessianOperator` is the network's Hessian; :class:`MatrixOperator` wraps an explicit
matrix (tests, synthetic spectra). Lanczos and the moment estimators accept any
:class:`Operator`: ``num_params``, ``device``, ``dtype``, ``matvec`` and ``matmat``; subclass
:class:`LinearOperator` to get ``matmat`` (a ``matvec`` per row) and the operator checks.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from .batchnorm import fast_batchnorm_hessian
from .device import no_tf32

BN_MODES = ("batch", "running")

_CAUSES = (
    "Usual causes: dropout or other random layers in train mode (put them in eval mode); "
    "batches that change between calls (shuffling, augmentation: pass one fixed list of "
    "tensors); BatchNorm running statistics updated in the forward pass; nondeterministic "
    "or TF32 GPU kernels."
)


class OperatorError(RuntimeError):
    """The operator is not one fixed symmetric linear map, or it produced NaN/Inf."""


@runtime_checkable
class Operator(Protocol):
    """What Lanczos and the moment estimators need: a fixed symmetric linear map on vectors of
    ``num_params`` entries, computed on ``device`` in ``dtype``. An operator may also say, with
    a ``shares_graphs`` attribute, that its matmat rows share each batch's graphs
    (:func:`~hessdepth.probes.lockstep_block` then runs probes in lockstep)."""

    num_params: int
    device: torch.device
    dtype: torch.dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """The operator times ``v`` (n,)."""

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """The operator times each row of ``V`` (k, n)."""


def check_operator(op) -> None:
    """Raise TypeError, saying what is missing, unless ``op`` is an :class:`Operator`."""
    if not isinstance(op, Operator):
        missing = [name for name in ("num_params", "device", "dtype", "matvec", "matmat") if not hasattr(op, name)]
        raise TypeError(
            f"{type(op).__name__} is not a hessdepth operator: it lacks {', '.join(missing)}. Subclass "
            "hessdepth.LinearOperator (set num_params, device, dtype; define matvec) or wrap a matrix in MatrixOperator"
        )


class LinearOperator:
    """Base class: subclasses set ``num_params``, ``device``, ``dtype`` and define ``matvec``."""

    num_params: int
    device: torch.device
    dtype: torch.dtype
    shares_graphs: bool = False  # whether matmat's rows share each batch's graphs (see Operator)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """Rows of ``V`` (k, n) multiplied one at a time; subclasses may batch them."""
        return torch.stack([self.matvec(v) for v in V])

    def _unit_probe(self, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(self.num_params, generator=gen, dtype=torch.float64)
        return (v / v.norm()).to(self.device)

    def check_symmetry(self, seed: int = 0, rtol: float | None = None) -> float:
        """Compare vᵀH(Hv) with (Hv)ᵀ(Hv) for a random v; return their relative difference.

        Both are equal for a fixed symmetric H, and (Hv)ᵀ(Hv) > 0 gives a scale that cannot
        cancel. Raises :class:`OperatorError` above ``rtol`` (default 1e4 machine epsilons of
        the operator's dtype).
        """
        rtol = 1e4 * torch.finfo(self.dtype).eps if rtol is None else rtol
        v = self._unit_probe(seed)
        hv = self.matvec(v)
        hhv = self.matvec(hv)
        scale = torch.dot(hv, hv).item()
        err = abs(torch.dot(v, hhv).item() - scale) / scale if scale > 0 else 0.0
        if err > rtol:
            raise OperatorError(
                f"{type(self).__name__} is not symmetric: v'H(Hv) and |Hv|^2 differ by "
                f"{err:.3g} (relative; tolerance {rtol:.3g}). {_CAUSES}"
            )
        return err

    def check_repeatability(self, seed: int = 0, rtol: float | None = None) -> float:
        """Multiply one random vector twice; return |Hv - Hv'| / |Hv|.

        Raises :class:`OperatorError` above ``rtol`` (default 1e3 machine epsilons of the
        operator's dtype).
        """
        rtol = 1e3 * torch.finfo(self.dtype).eps if rtol is None else rtol
        v = self._unit_probe(seed)
        first, second = self.matvec(v), self.matvec(v)
        scale = first.norm().item()
        err = (first - second).norm().item() / scale if scale > 0 else 0.0
        if err > rtol:
            raise OperatorError(
                f"{type(self).__name__} is not repeatable: two products with the same vector "
                f"differ by {err:.3g} (relative; tolerance {rtol:.3g}). {_CAUSES}"
            )
        return err


class MatrixOperator(LinearOperator):
    """An explicit matrix as an operator; a 1-D tensor stands for a diagonal matrix."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = torch.as_tensor(matrix)
        if self.matrix.dim() not in (1, 2) or (self.matrix.dim() == 2 and self.matrix.shape[0] != self.matrix.shape[1]):
            raise ValueError(f"need a square matrix or a diagonal, got shape {tuple(self.matrix.shape)}")
        self.num_params = self.matrix.shape[0]
        self.device, self.dtype = self.matrix.device, self.matrix.dtype

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        X = V.to(self.device, self.dtype)
        out = X * self.matrix if self.matrix.dim() == 1 else X @ self.matrix.T
        return out.to(V.device, V.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matmat(v[None])[0]


def multiply_rows(op: Operator, V: torch.Tensor) -> torch.Tensor:
    """H times each row of ``V`` (k, n), computed in the operator's dtype, returned in float64:
    one ``op.matmat`` for k > 1, one ``op.matvec`` for a single row."""
    X = V.to(op.dtype)
    return (op.matmat(X) if len(X) > 1 else op.matvec(X[0])[None]).double()


# Hessian-vector product compositions: (per-batch loss of a parameter tuple, parameters,
# tangents, batched) -> H·tangents as a tuple like the parameters. With ``batched`` the
# tangents have a leading dimension k, and all k go through one pass over the batch.
def _jvp_grad(loss, params, tangents, batched):
    def hvp(t):
        return jvp(grad(loss), (params,), (t,))[1]

    return vmap(hvp)(tangents) if batched else hvp(tangents)


def _vjp_grad(loss, params, tangents, batched):
    pullback = vjp(grad(loss), params)[1]
    return (vmap(pullback)(tangents) if batched else pullback(tangents))[0]


def _gradient_graph(loss, params):
    """(leaves, gradient of ``loss`` at them with its graph kept for a second backward)."""
    with torch.enable_grad():
        leaves = [p.detach().requires_grad_() for p in params]
        return leaves, torch.autograd.grad(loss(leaves), leaves, create_graph=True)


def _second_backward(graph, tangents, batched, keep=False):
    leaves, grads = graph
    return torch.autograd.grad(
        grads, leaves, tangents, retain_graph=keep, is_grads_batched=batched, allow_unused=True, materialize_grads=True
    )


def _double_backward(loss, params, tangents, batched):
    if batched:  # the k tangents share the batch's first-order graph: a second backward each
        return _shared_second_backward(_gradient_graph(loss, params), tangents)
    return _second_backward(_gradient_graph(loss, params), tangents, batched)


def _shared_second_backward(graph, tangents):
    """One first-order graph, one plain second backward per row of the batched ``tangents``
    (a loop, not vmap: bench/RESULTS.md "Shared graphs"); each row's product is computed exactly
    as one unbatched product would be."""
    k = len(tangents[0])
    rows = [_second_backward(graph, tuple(t[i] for t in tangents), False, keep=i < k - 1) for i in range(k)]
    return tuple(torch.stack(parts) for parts in zip(*rows))


COMPOSITIONS = {
    "jvp_grad": "forward-over-reverse: torch.func.jvp of torch.func.grad",
    "vjp_grad": "reverse-over-reverse: torch.func.vjp of torch.func.grad (slow on CPU)",
    "double_backward": "reverse-over-reverse: torch.autograd.grad twice, create_graph=True; the rows of "
    "a matmat share each batch's first-order graph",
    "double_backward_cached": "double_backward keeping every batch's first-order graph between "
    "products (rebuilt when the parameters change): fastest, but holds all batches' graphs in memory",
}
_HVP = {"jvp_grad": _jvp_grad, "vjp_grad": _vjp_grad, "double_backward": _double_backward}
# "auto" (the default) picks double_backward_cached when every batch's graph fits in
# ``graph_cache_gb``, else double_backward: the cache saves the forward and first backward of
# every product (bench/RESULTS.md has the measured ratios). Both double_backward compositions
# use the hand-derived second derivative of BatchNorm (hessdepth.batchnorm).
DEFAULT_COMPOSITION = "auto"
DEFAULT_GRAPH_CACHE_GB = 4.0


def _saved_bytes(build: Callable) -> int:
    """Bytes of the tensors autograd saves while ``build()`` runs, each storage counted once."""
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        build()
    return sum(storages.values())


class _GraphCache:
    """Every batch's first-order graph, kept while the model's parameters are unchanged."""

    def __init__(self):
        self._key, self._graphs = None, None

    def get(self, model: nn.Module, build: Callable[[], list]) -> list:
        key = [(p.data_ptr(), p._version) for p in model.parameters()]
        if key != self._key:
            self._graphs = None  # free the old graphs before building new ones
            self._graphs, self._key = build(), key
        return self._graphs


class HessianOperator(LinearOperator):
    """Hessian of the mean cross-entropy over all samples of ``batches`` at the current parameters.

    ``batches`` is a sequence of ``(x, y)`` tensors, kept in its order (inputs are moved to the
    model's device and dtype once). Each batch's summed loss is divided by the total sample
    count, so an uneven last batch weighs by its size. Products are computed in the model's
    dtype and accumulated over batches in float64, with TF32 off.

    ``bn_mode``: ``"batch"`` -- every BatchNorm normalises with the statistics of the batch it
    sees (the loss SGD trains on), running statistics are neither used nor updated;
    ``"running"`` -- eval-mode BatchNorm with the stored running statistics (PyHessian's
    choice). Other modules keep their own train/eval mode.

    ``composition`` picks how the Hessian-vector product is built (``COMPOSITIONS`` describes
    each). ``"auto"`` resolves at construction, by the saved-tensor bytes of the first batch's
    graph scaled to all samples, to ``double_backward_cached`` when they fit in ``graph_cache_gb``
    GiB, else to ``double_backward``; ``composition`` then names the choice and ``graph_bytes``
    the estimate. All compositions agree with a finite-difference-checked Hessian through train-mode
    BatchNorm. ``torch.func.hessian``, ``jacrev(jacrev)`` and ``grad(jvp)`` do not, so they
    are not offered.
    """

    product_name = "Hessian-vector product"  # in error messages

    def __init__(
        self,
        model: nn.Module,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        bn_mode: str = "batch",
        composition: str = DEFAULT_COMPOSITION,
        graph_cache_gb: float = DEFAULT_GRAPH_CACHE_GB,
    ):
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
        if composition != "auto" and composition not in COMPOSITIONS:
            raise ValueError(f"composition must be 'auto' or one of {tuple(COMPOSITIONS)}, got {composition!r}")
        self.model, self.bn_mode = model, bn_mode
        named = list(model.named_parameters())
        if not named:
            raise ValueError("the model has no parameters")
        self._names = [name for name, _ in named]
        self._shapes = [p.shape for _, p in named]
        self._sizes = [p.numel() for _, p in named]
        self.num_params = sum(self._sizes)
        self.device, self.dtype = named[0][1].device, named[0][1].dtype
        self._bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bn_mode == "running" and any(not m.track_running_stats for m in self._bns):
            raise ValueError("bn_mode='running' needs BatchNorm layers that track running statistics")
        self.batches = [self._to_device(x, y) for x, y in batches]
        if not self.batches:
            raise ValueError("batches is empty")
        self.num_samples = sum(len(y) for _, y in self.batches)
        self._graph_cache = _GraphCache()  # used by "double_backward_cached"
        self.graph_bytes = None
        if composition == "auto":
            self.graph_bytes = self._estimate_graph_bytes()
            fits = self.graph_bytes <= graph_cache_gb * 2**30
            composition = "double_backward_cached" if fits else "double_backward"
        self.composition = composition  # fixed from here on

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"each batch needs as many labels as inputs (>0), got {len(x)} and {len(y)}")
        dtype = self.dtype if x.is_floating_point() else x.dtype
        return x.to(self.device, dtype), y.to(self.device)

    def _estimate_graph_bytes(self) -> int:
        """Memory all batches' first-order graphs would keep, from the first batch's saved tensors."""
        x, y = self.batches[0]
        with self._mode(fast_bn=True):  # the graph double_backward would keep
            first = _saved_bytes(lambda: _gradient_graph(self._batch_loss(x, y), self._params()))
        return first * self.num_samples // len(y)

    @contextlib.contextmanager
    def _mode(self, fast_bn: bool | None = None) -> Iterator[None]:
        """BatchNorm in the chosen mode, running statistics untouched, TF32 off; restored on exit.

        With ``fast_bn`` (default: a double_backward composition), BatchNorm's second derivative
        is the hand-derived one of :mod:`hessdepth.batchnorm`.
        """
        if fast_bn is None:
            fast_bn = self.composition.startswith("double_backward")
        saved = [(m, m.training, m.track_running_stats) for m in self._bns]
        try:
            for m in self._bns:
                m.training = self.bn_mode == "batch"
                if self.bn_mode == "batch":
                    m.track_running_stats = False  # F.batch_norm then gets no running buffers
            with no_tf32(), fast_batchnorm_hessian() if fast_bn else contextlib.nullcontext():
                yield
        finally:
            for m, training, track in saved:
                m.training, m.track_running_stats = training, track

    def _batch_loss(self, x: torch.Tensor, y: torch.Tensor) -> Callable:
        def loss(params):
            logits = functional_call(self.model, dict(zip(self._names, params)), (x,))
            return F.cross_entropy(logits, y, reduction="sum") / self.num_samples

        return loss

    def _params(self) -> tuple[torch.Tensor, ...]:
        return tuple(p.detach() for p in self.model.parameters())

    def _check_finite(self, out: torch.Tensor, what: str) -> torch.Tensor:
        if not torch.isfinite(out).all():
            raise OperatorError(
                f"NaN/Inf in the {what} (bn_mode={self.bn_mode!r}, composition={self.composition!r}): "
                "the parameters or the data contain NaN/Inf, or the loss overflowed (a diverged model?)"
            )
        return out

    def _product(self, V: torch.Tensor, batched: bool) -> torch.Tensor:
        """H V for V of shape (n,), or (k, n) with ``batched``; accumulated in float64."""
        lead = V.shape[:-1]
        X = V.to(self.device, self.dtype)
        tangents = tuple(t.reshape(*lead, *s) for t, s in zip(X.split(self._sizes, dim=-1), self._shapes))
        out = torch.zeros(V.shape, dtype=torch.float64, device=self.device)
        with self._mode():
            for parts in self._batch_products(tangents, batched):
                out += torch.cat([t.reshape(*lead, -1) for t in parts], dim=-1)
        return self._check_finite(out, self.product_name).to(V.device, V.dtype)

    def _batch_products(self, tangents, batched: bool) -> Iterator[tuple[torch.Tensor, ...]]:
        """Each batch's Hessian times the tangents, by the chosen composition."""
        if self.composition == "double_backward_cached":
            for graph in self._graphs():
                yield _second_backward(graph, tangents, batched, keep=True)
        else:
            hvp, params = _HVP[self.composition], self._params()
            for x, y in self.batches:
                yield hvp(self._batch_loss(x, y), params, tangents, batched)

    def _graphs(self) -> list:
        """Every batch's first-order graph, kept while the parameters are unchanged."""
        params = self._params()
        return self._graph_cache.get(
            self.model, lambda: [_gradient_graph(self._batch_loss(x, y), params) for x, y in self.batches]
        )

    def _uncached(self) -> HessianOperator:
        """This operator building every product's graphs anew (itself when it keeps none), for
        the checks: a kept graph would freeze randomness they must see."""
        if self.composition != "double_backward_cached":
            return self
        view = copy.copy(self)
        view.composition, view._graph_cache = "double_backward", _GraphCache()
        return view

    def check_symmetry(self, seed: int = 0, rtol: float | None = None) -> float:
        """:meth:`LinearOperator.check_symmetry` on graphs built anew for each product."""
        return LinearOperator.check_symmetry(self._uncached(), seed, rtol)

    def check_repeatability(self, seed: int = 0, rtol: float | None = None) -> float:
        """:meth:`LinearOperator.check_repeatability` on graphs built anew for each product."""
        return LinearOperator.check_repeatability(self._uncached(), seed, rtol)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a 1-D ``v`` over all parameters; same dtype and device as ``v``."""
        if v.shape != (self.num_params,):
            raise ValueError(f"expected shape ({self.num_params},), got {tuple(v.shape)}")
        return self._product(v, batched=False)

    @property
    def shares_graphs(self) -> bool:
        """Whether the rows of a :meth:`matmat` share each batch's forward pass and first backward
        (composition double_backward), so that probes run in lockstep cost less per product."""
        return self.composition == "double_backward"

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """H times each row of ``V`` (k, n), all k in one pass over the data: with double_backward
        the rows share each batch's first-order graph, else vmap over tangents."""
        if V.dim() != 2 or V.shape[1] != self.num_params:
            raise ValueError(f"expected shape (k, {self.num_params}), got {tuple(V.shape)}")
        return self._product(V, batched=True)

    def gradient(self) -> torch.Tensor:
        """Full-data gradient (float64, flattened) at the current parameters, same loss and BN mode."""
        out = torch.zeros(self.num_params, dtype=torch.float64, device=self.device)
        leaves = [p.requires_grad_() for p in self._params()]
        with self._mode(), torch.enable_grad():
            for x, y in self.batches:
                grads = torch.autograd.grad(self._batch_loss(x, y)(leaves), leaves)
                out += torch.cat([g.reshape(-1) for g in grads])
        return self._check_finite(out, "gradient")

    def loss(self) -> float:
        """Full-data mean loss at the current parameters, same BN mode."""
        params = self._params()
        with self._mode(), torch.no_grad():
            return sum(float(self._batch_loss(x, y)(params)) for x, y in self.batches)
