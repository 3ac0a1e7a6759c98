"""Linear operators: what Lanczos and the moment estimators multiply.

Vectors are 1-D tensors over all parameters, flattened in ``model.parameters()`` order.
Lanczos and the moment estimators accept any :class:`Operator`: ``num_params``, ``device``,
``dtype``, ``shares_graphs``, ``matvec`` and ``matmat``; subclass :class:`LinearOperator` to get
``matmat`` (a ``matvec`` per row), ``shares_graphs = False`` and the operator checks.
:class:`MatrixOperator` wraps an explicit matrix (tests, synthetic spectra); a network's
curvature matrices are :class:`hessdepth.LossOperator`'s subclasses (Hessian, Gauss-Newton).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

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
    ``num_params`` entries, computed on ``device`` in ``dtype``. ``shares_graphs`` says whether
    the rows of one matmat share each batch's graphs, so that probes run in lockstep cost less
    per product (:func:`~hessdepth.probes.lockstep_size` then runs them so)."""

    num_params: int
    device: torch.device
    dtype: torch.dtype
    shares_graphs: bool

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """The operator times ``v`` (n,)."""

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """The operator times each row of ``V`` (k, n)."""


def check_operator(op) -> None:
    """Raise TypeError, saying what is missing, unless ``op`` is an :class:`Operator`."""
    if not isinstance(op, Operator):
        missing = [
            name
            for name in ("num_params", "device", "dtype", "matvec", "matmat", "shares_graphs")
            if not hasattr(op, name)
        ]
        raise TypeError(
            f"{type(op).__name__} is not a hessdepth operator: it lacks {', '.join(missing)}. Subclass "
            "hessdepth.LinearOperator (set num_params, device, dtype; define matvec) or wrap a matrix in MatrixOperator"
        )


class LinearOperator:
    """Base class: subclasses set ``num_params``, ``device``, ``dtype`` and define ``matvec``."""

    num_params: int
    device: torch.device
    dtype: torch.dtype
    shares_graphs: bool = False  # matvec per row shares nothing (see Operator)

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
