"""The base of a network's curvature operators: the training loss over fixed batches.

:class:`LossOperator` owns what the Hessian and the Gauss-Newton matrix share: the batches and
the loss normalisation, the BatchNorm mode, float64 accumulation over batches, the NaN/Inf
check, and the full-data gradient and loss. A subclass says how one batch multiplies
(:meth:`LossOperator._batch_products`): :class:`hessdepth.HessianOperator`,
:class:`hessdepth.GaussNewtonOperator`.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .batchnorm import fast_batchnorm_hessian
from .device import no_tf32
from .operator import LinearOperator, OperatorError

BN_MODES = ("batch", "running")


class LossOperator(LinearOperator):
    """A curvature matrix of the mean cross-entropy over all samples of ``batches``, at the
    model's current parameters.

    ``batches`` is a sequence of ``(x, y)`` tensors, kept in its order (inputs are moved to the
    model's device and dtype once). Each batch's summed loss is divided by the total sample
    count, so an uneven last batch weighs by its size. Products are computed in the model's
    dtype and accumulated over batches in float64, with TF32 off.

    ``bn_mode``: ``"batch"`` -- every BatchNorm normalises with the statistics of the batch it
    sees (the loss SGD trains on), running statistics are neither used nor updated;
    ``"running"`` -- eval-mode BatchNorm with the stored running statistics (PyHessian's
    choice). Other modules keep their own train/eval mode.
    """

    product_name = "product"  # in error messages
    composition = ""  # how one batch multiplies, as recorded with the results
    fast_bn = False  # whether BatchNorm's hand-derived second derivative is routed in (hessdepth.batchnorm)

    def __init__(self, model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], bn_mode: str = "batch"):
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
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

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"each batch needs as many labels as inputs (>0), got {len(x)} and {len(y)}")
        dtype = self.dtype if x.is_floating_point() else x.dtype
        return x.to(self.device, dtype), y.to(self.device)

    @contextlib.contextmanager
    def _mode(self, fast_bn: bool | None = None) -> Iterator[None]:
        """BatchNorm in the chosen mode, running statistics untouched, TF32 off; restored on exit.

        With ``fast_bn`` (default: the operator's :attr:`fast_bn`), BatchNorm's second derivative
        is the hand-derived one of :mod:`hessdepth.batchnorm`.
        """
        fast_bn = self.fast_bn if fast_bn is None else fast_bn
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

    def _logits(self, x: torch.Tensor) -> Callable:
        """The batch's logits as a function of a parameter tuple."""

        def logits(params):
            return functional_call(self.model, dict(zip(self._names, params)), (x,))

        return logits

    def _batch_loss(self, x: torch.Tensor, y: torch.Tensor) -> Callable:
        """The batch's share of the mean loss as a function of a parameter tuple."""
        logits = self._logits(x)

        def loss(params):
            return F.cross_entropy(logits(params), y, reduction="sum") / self.num_samples

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

    def _batch_products(self, tangents, batched: bool) -> Iterator[tuple[torch.Tensor, ...]]:
        """Each batch's matrix times the tangents (a tuple like the parameters; with ``batched``
        each has a leading dimension k), as a tuple like the parameters: the subclass's one job."""
        raise NotImplementedError

    def _product(self, V: torch.Tensor, batched: bool) -> torch.Tensor:
        """The matrix times V of shape (n,), or (k, n) with ``batched``; accumulated in float64."""
        lead = V.shape[:-1]
        X = V.to(self.device, self.dtype)
        tangents = tuple(t.reshape(*lead, *s) for t, s in zip(X.split(self._sizes, dim=-1), self._shapes))
        out = torch.zeros(V.shape, dtype=torch.float64, device=self.device)
        with self._mode():
            for parts in self._batch_products(tangents, batched):
                out += torch.cat([t.reshape(*lead, -1) for t in parts], dim=-1)
        return self._check_finite(out, self.product_name).to(V.device, V.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """The matrix times a 1-D ``v`` over all parameters; same dtype and device as ``v``."""
        if v.shape != (self.num_params,):
            raise ValueError(f"expected shape ({self.num_params},), got {tuple(v.shape)}")
        return self._product(v, batched=False)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """The matrix times each row of ``V`` (k, n), all k in one pass over the data."""
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
