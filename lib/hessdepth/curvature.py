"""Parts of the curvature: diagonal blocks, the Gauss-Newton matrix, and differences of operators.

With logits z(θ) and the loss L(z), the Hessian splits as H = G + R: the Gauss-Newton matrix
G = Jᵀ (∂²L/∂z²) J, J = ∂z/∂θ, positive semi-definite for the cross-entropy, and the remainder
R = Σ_i (∂L/∂z_i) ∇²z_i, the network function's own curvature weighted by the loss gradient.
:func:`block` restricts any of them to a named group of parameters (a stage, the classifier).
Each part is an operator that :func:`hessdepth.slq` and :func:`hessdepth.hutchinson_moments`
take as they take the Hessian.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn
from torch.func import jvp, vjp, vmap

from .loss_operator import LossOperator
from .operator import LinearOperator, multiply_rows


def parameter_indices(model: nn.Module, names: str | Sequence[str]) -> torch.Tensor:
    """Sorted flat indices, into ``model.parameters()`` order, of the parameters ``names`` select.

    Each entry is a name from ``model.named_parameters()`` or a module prefix (``"layer1."`` or
    ``"layer1"``) that selects every parameter under that module. Raises ValueError naming the
    entries that select nothing.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("no parameter names or prefixes given")
    named = [(name, p.numel()) for name, p in model.named_parameters()]

    def selects(entry: str, name: str) -> bool:
        return name == entry or name.startswith(entry.rstrip(".") + ".")

    unknown = [e for e in names if not any(selects(e, name) for name, _ in named)]
    if unknown:
        top = list(dict.fromkeys(name.split(".")[0] + "." for name, _ in named if "." in name))
        raise ValueError(
            f"unknown parameter names or prefixes {unknown}; valid: module prefixes such as "
            f"{top}, or parameter names {[name for name, _ in named]}"
        )
    chunks, offset = [], 0
    for name, size in named:
        if any(selects(e, name) for e in names):
            chunks.append(torch.arange(offset, offset + size))
        offset += size
    return torch.cat(chunks)


class BlockOperator(LinearOperator):
    """The diagonal block ``A[index][:, index]`` of an operator A, of dimension ``len(index)``.

    A block vector is embedded into A's space (zeros outside ``index``), multiplied by A and
    restricted to ``index``: exact, at the cost of one product with A. ``index`` is sorted and
    deduplicated; block vectors hold A's coordinates in that order.
    """

    def __init__(self, op, index: torch.Tensor | Sequence[int]):
        index = torch.as_tensor(index, dtype=torch.long).unique()
        if not len(index) or index[0] < 0 or index[-1] >= op.num_params:
            raise ValueError(f"need a nonempty index within [0, {op.num_params})")
        self.op, self.index = op, index.to(op.device)
        self.num_params, self.device, self.dtype = len(index), op.device, op.dtype

    @property
    def shares_graphs(self) -> bool:
        """As the full operator's: a block's matmat is one matmat of the full operator."""
        return self.op.shares_graphs

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        if V.dim() != 2 or V.shape[1] != self.num_params:
            raise ValueError(f"expected shape (k, {self.num_params}), got {tuple(V.shape)}")
        full = torch.zeros(len(V), self.op.num_params, dtype=self.dtype, device=self.device)
        full[:, self.index] = V.to(self.device, self.dtype)
        return multiply_rows(self.op, full)[:, self.index].to(V.device, V.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        if v.shape != (self.num_params,):
            raise ValueError(f"expected shape ({self.num_params},), got {tuple(v.shape)}")
        return self.matmat(v[None])[0]


def block(op, names: str | Sequence[str], model: nn.Module | None = None) -> BlockOperator:
    """The diagonal block of a model's curvature operator for the parameters ``names`` select
    (:func:`parameter_indices`); ``model`` defaults to ``op.model``."""
    model = getattr(op, "model", None) if model is None else model
    if model is None:
        raise ValueError(f"{type(op).__name__} has no model: pass the model its vectors are over")
    if sum(p.numel() for p in model.parameters()) != op.num_params:
        raise ValueError(f"the model's parameter count differs from the operator's dimension {op.num_params}")
    return BlockOperator(op, parameter_indices(model, names))


class GaussNewtonOperator(LossOperator):
    """Gauss-Newton matrix G = Jᵀ H_z J of the loss that :class:`~hessdepth.HessianOperator`
    differentiates (batches, ``bn_mode``, dtypes, float64 accumulation, :meth:`gradient` and
    :meth:`loss` are :class:`~hessdepth.LossOperator`'s).

    J is the Jacobian of each batch's logits by the parameters (through batch-statistics
    BatchNorm it couples a batch's samples), H_z the Hessian of the loss by the logits:
    (diag(p) - p pᵀ) / N per sample, p the softmax and N the total sample count. J v is a
    forward-mode jvp and Jᵀu a vjp, so no second derivative of the network is formed. G is
    symmetric positive semi-definite, and equals H where the logits are linear in the parameters.
    """

    product_name = "Gauss-Newton-vector product"
    composition = "gauss_newton"

    def _batch_products(self, tangents, batched: bool) -> Iterator[tuple[torch.Tensor, ...]]:
        params = self._params()
        for x, _ in self.batches:
            logits_of = self._logits(x)
            logits, pullback = vjp(logits_of, params)
            probs = torch.softmax(logits, dim=-1)

            def product(t):
                jt = jvp(logits_of, (params,), (t,))[1]
                return pullback(probs * (jt - (probs * jt).sum(-1, keepdim=True)) / self.num_samples)[0]

            yield vmap(product)(tangents) if batched else product(tangents)


class DifferenceOperator(LinearOperator):
    """``a - b`` for two operators of one dimension, e.g. the remainder H - G.

    Both products are taken in their operator's dtype and subtracted in float64.
    """

    def __init__(self, a, b):
        if a.num_params != b.num_params:
            raise ValueError(f"operators of different dimensions: {a.num_params} and {b.num_params}")
        self.a, self.b = a, b
        self.num_params, self.device, self.dtype = a.num_params, a.device, a.dtype

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return (multiply_rows(self.a, V) - multiply_rows(self.b, V)).to(V.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matmat(v[None])[0]
