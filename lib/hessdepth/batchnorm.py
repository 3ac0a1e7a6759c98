"""BatchNorm with its second derivative written out by hand.

PyTorch's generic double backward of batch-statistics BatchNorm (``batchnorm_double_backward``)
takes about 35 full-size tensor passes per layer, a large part of a cached Hessian-vector
product (bench/RESULTS.md). Per channel, with x̂ = (x − μ)·s, s = 1/√(var + ε) and the
projection P(g) = g − ⟨g⟩ − x̂⟨g x̂⟩, the first backward is

    ∂x = γ s P(∂y),   ∂γ = Σ ∂y x̂,   ∂β = Σ ∂y,

and differentiating L₂ = Σ ġx·∂x + ġγ·∂γ + ġβ·∂β once more gives (A = Σ ġx P(∂y), N elements):

    ∂L₂/∂(∂y) = γ s P(ġx) + ġγ x̂ + ġβ
    ∂L₂/∂γ    = s A
    ∂L₂/∂x    = −γ s² A x̂ / N − γ s² ⟨∂y x̂⟩ P(ġx) + s (ġγ − γ s Σ ġx x̂ / N) P(∂y)

which is about a dozen passes, most of them fused (PyTorch's own BatchNorm kernels compute
per-channel affine maps of x̂ and the channel sums Σ g x̂ in one pass each). With fixed running
statistics (evaluation mode) P is the identity and s, μ are constants:
∂L₂/∂(∂y) = γ s ġx + ġγ x̂ + ġβ, ∂L₂/∂γ = s Σ ġx ∂y, ∂L₂/∂x = ġγ s ∂y.

:func:`fast_batchnorm_hessian` routes every affine ``F.batch_norm`` call that either uses batch
statistics only (training mode, no running buffers) or only reads running statistics
(evaluation mode) through this path; calls that would update running statistics are left
alone. ``gradgradcheck`` in float64 checks both (``tests/test_batchnorm.py``).
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_BATCH_NORM_SIGNATURE = inspect.signature(F.batch_norm)


def _per_channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1, *([1] * (like.dim() - 2)))


def _affine_of_xhat(x, mean, var, eps, scale, shift):
    """scale·x̂ + shift per channel, x̂ = (x − mean)/√(var + ε): one fused pass (eval-mode BN's kernel)."""
    return torch.native_batch_norm(x, scale, shift, mean, var, False, 0.0, eps)[0]


def _channel_dots(g, x, mean, rstd):
    """(Σ g·(x − mean)·rstd, Σ g) per channel: one fused pass (the reduction of BN's backward)."""
    _, dot, total = torch.ops.aten.native_batch_norm_backward(
        g, x, None, None, None, mean, rstd, True, 0.0, [False, True, True]
    )
    return dot, total


class _BatchNormGrad(torch.autograd.Function):
    """(x, γ, ∂y) -> (∂x, ∂γ, ∂β) of BatchNorm; its backward is the hand-derived one.

    ``train``: batch statistics (``mean``, ``rstd`` = 1/√(``var`` + ε) of x); else fixed
    running statistics. Every full-size pass is one of PyTorch's fused BatchNorm kernels or
    an in-place multiply-add.
    """

    @staticmethod
    def forward(ctx, x, weight, mean, rstd, var, grad_out, eps, train):
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_out,
            x,
            weight,
            None if train else mean,
            None if train else var,
            mean if train else None,
            rstd if train else None,
            train,
            eps,
            [True, True, True],
        )
        ctx.save_for_backward(x, weight, mean, rstd, var, grad_out, grad_w, grad_b)
        ctx.eps, ctx.train = eps, train
        return grad_x, grad_w, grad_b

    @staticmethod
    def backward(ctx, gg_x, gg_w, gg_b):
        x, weight, mean, rstd, var, grad_out, grad_w, grad_b = ctx.saved_tensors
        n, eps = x.numel() // x.shape[1], ctx.eps
        g_s = weight * rstd
        gs = _per_channel(g_s, x)
        sum_ggx_gy, _ = _channel_dots(gg_x, grad_out, torch.zeros_like(mean), torch.ones_like(rstd))
        if not ctx.train:  # ∂x = γ s ∂y, ∂γ = Σ ∂y x̂, ∂β = Σ ∂y with s and the mean fixed
            d_grad_out = _affine_of_xhat(x, mean, var, eps, gg_w, gg_b).addcmul_(gs, gg_x)
            return (
                grad_out * _per_channel(gg_w * rstd, x),
                rstd * sum_ggx_gy,
                None,
                None,
                None,
                d_grad_out,
                None,
                None,
            )
        sum_ggx_xhat, sum_ggx = _channel_dots(gg_x, x, mean, rstd)
        # A = Σ ġx P(∂y), using Σ ∂y = ∂β and Σ ∂y x̂ = ∂γ from the first backward.
        a = sum_ggx_gy - (grad_b * sum_ggx + grad_w * sum_ggx_xhat) / n
        d_grad_out = _affine_of_xhat(
            x, mean, var, eps, gg_w - g_s * sum_ggx_xhat / n, gg_b - g_s * sum_ggx / n
        ).addcmul_(gs, gg_x)
        b = -g_s * rstd * grad_w / n  # coefficient of P(ġx)
        c = rstd * (gg_w - g_s * sum_ggx_xhat / n)  # coefficient of P(∂y)
        xhat_coef = -g_s * rstd * a / n - b * sum_ggx_xhat / n - c * grad_w / n
        const = -(b * sum_ggx + c * grad_b) / n
        d_x = (
            _affine_of_xhat(x, mean, var, eps, xhat_coef, const)
            .addcmul_(_per_channel(c, x), grad_out)
            .addcmul_(_per_channel(b, x), gg_x)
        )
        return d_x, rstd * a, None, None, None, d_grad_out, None, None


class _BatchNorm(torch.autograd.Function):
    """BatchNorm whose backward is :class:`_BatchNormGrad` (so twice differentiable by hand)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps):
        train = running_mean is None
        y, mean, rstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, train, 0.0, eps)
        if train:
            var = rstd.pow(-2) - eps
        else:
            mean, var, rstd = running_mean, running_var, (running_var + eps).rsqrt()
        ctx.save_for_backward(x, weight, mean, rstd, var)
        ctx.eps, ctx.train = eps, train
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, rstd, var = ctx.saved_tensors
        grad_x, grad_w, grad_b = _BatchNormGrad.apply(x, weight, mean, rstd, var, grad_out, ctx.eps, ctx.train)
        return grad_x, grad_w, grad_b, None, None, None


def batch_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.batch_norm`` that never updates running statistics, with the hand-derived second derivative.

    Without running statistics it normalises with the batch's own (training mode); with them,
    with those (evaluation mode).
    """
    return _BatchNorm.apply(x, weight, bias, running_mean, running_var, eps)


class _RouteBatchNorm(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            call = _BATCH_NORM_SIGNATURE.bind(*args, **kwargs)
            call.apply_defaults()
            a = call.arguments
            batch_stats = a["training"] and a["running_mean"] is None and a["running_var"] is None
            running_stats = not a["training"] and a["running_mean"] is not None and a["running_var"] is not None
            if (batch_stats or running_stats) and a["weight"] is not None and a["bias"] is not None:
                return batch_norm(a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"])
        return func(*args, **kwargs)


@contextlib.contextmanager
def fast_batchnorm_hessian() -> Iterator[None]:
    """Inside the block, ``F.batch_norm`` calls that update no running statistics are differentiated by hand."""
    with _RouteBatchNorm():
        yield
