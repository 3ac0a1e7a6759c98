"""Tiny float64 models with uneven batches, and their exact Hessians, for the operator tests.

The reference Hessian is built row by row with plain double backward on a copy of the
module (no torch.func, no functional_call, BatchNorm as the module runs it: train mode for
batch statistics, eval mode for running statistics), from the sample-weighted mean loss
``sum(per-sample cross-entropy) / N``. ``fd_hvp`` gives central finite differences of the
same loss's gradient, against which the reference is itself checked. ``exact_gauss_newton``
builds Jᵀ H_z J the same way: J row by row by reverse mode, H_z by autograd's dense Hessian of
the loss in the logits.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

import hessdepth as hd

CASES = ("cnn", "mlp", "resnet")
BATCH_SIZES = (5, 5, 3)  # uneven: the last batch must weigh 3/13, not 1/3
NUM_CLASSES = 3


def _running_stats(model: nn.Module, gen: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics, so the two BN modes differ."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.3 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))


def make_case(name: str, seed: int = 0) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """(float64 model in train mode, batches of sizes BATCH_SIZES), deterministic in ``seed``."""
    torch.manual_seed(seed)
    if name == "cnn":  # 283 parameters
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(4, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, NUM_CLASSES),
        )
        shape = (3, 6, 6)
    elif name == "mlp":  # 139 parameters
        model = nn.Sequential(
            nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, NUM_CLASSES)
        )
        shape = (5,)
    elif name == "resnet":  # the project's ResNet-8 at width 1 (363 parameters): skips, zero-pad shortcuts
        model = hd.build_model("resnet", 8, width=1, num_classes=NUM_CLASSES)
        shape = (3, 8, 8)
    else:
        raise ValueError(f"unknown case {name!r}; one of {CASES}")
    model = model.double().train()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        _running_stats(model, gen)
    batches = []
    for size in BATCH_SIZES:
        x = torch.randn(size, *shape, generator=gen, dtype=torch.float64)
        y = torch.randint(0, NUM_CLASSES, (size,), generator=gen)
        batches.append((x, y))
    return model, batches


def _reference_copy(model: nn.Module, bn_mode: str) -> nn.Module:
    ref = copy.deepcopy(model)
    return ref.eval() if bn_mode == "running" else ref.train()


def _mean_loss(model: nn.Module, batches) -> torch.Tensor:
    total = sum(len(y) for _, y in batches)
    return sum(F.cross_entropy(model(x), y, reduction="sum") for x, y in batches) / total


def _flat_grad(model: nn.Module, batches, create_graph: bool = False) -> torch.Tensor:
    params = list(model.parameters())
    grads = torch.autograd.grad(_mean_loss(model, batches), params, create_graph=create_graph)
    return torch.cat([g.reshape(-1) for g in grads])


def exact_hessian(model: nn.Module, batches, bn_mode: str) -> torch.Tensor:
    """Dense Hessian (n, n) of the sample-weighted mean loss, one double-backward row at a time."""
    ref = _reference_copy(model, bn_mode)
    params = list(ref.parameters())
    grad = _flat_grad(ref, batches, create_graph=True)
    rows = []
    for i in range(grad.numel()):
        row = torch.autograd.grad(grad[i], params, retain_graph=True, allow_unused=True, materialize_grads=True)
        rows.append(torch.cat([r.reshape(-1) for r in row]))
    return torch.stack(rows).detach()


@functools.lru_cache(maxsize=None)
def case_hessian(name: str, bn_mode: str) -> torch.Tensor:
    """The exact Hessian of ``make_case(name)`` (cached per test session)."""
    model, batches = make_case(name)
    return exact_hessian(model, batches, bn_mode)


@functools.lru_cache(maxsize=None)
def case_gauss_newton(name: str, bn_mode: str) -> torch.Tensor:
    """The exact Gauss-Newton matrix of ``make_case(name)`` (cached per test session)."""
    model, batches = make_case(name)
    return exact_gauss_newton(model, batches, bn_mode)


def fd_hvp(model: nn.Module, batches, bn_mode: str, v: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """Central finite difference of the gradient along ``v``: (g(p + h v) - g(p - h v)) / 2h."""
    ref = _reference_copy(model, bn_mode)
    params = list(ref.parameters())
    start = [p.detach().clone() for p in params]

    def grad_at(sign: float) -> torch.Tensor:
        with torch.no_grad():
            offset = 0
            for p, p0 in zip(params, start):
                p.copy_(p0 + sign * h * v[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        return _flat_grad(ref, batches)

    return ((grad_at(1.0) - grad_at(-1.0)) / (2 * h)).detach()


def exact_gauss_newton(model: nn.Module, batches, bn_mode: str) -> torch.Tensor:
    """Dense Gauss-Newton matrix (n, n): per batch Jᵀ H_z J, J the Jacobian of the batch's
    logits (one backward per logit), H_z the Hessian of the batch's share of the mean loss in
    the logits (``torch.autograd.functional.hessian``)."""
    ref = _reference_copy(model, bn_mode)
    params = list(ref.parameters())
    total = sum(len(y) for _, y in batches)
    G = 0
    for x, y in batches:
        logits = ref(x)
        J = torch.stack(
            [
                torch.cat(
                    [
                        g.reshape(-1)
                        for g in torch.autograd.grad(
                            z, params, retain_graph=True, allow_unused=True, materialize_grads=True
                        )
                    ]
                )
                for z in logits.reshape(-1)
            ]
        )
        H_z = torch.autograd.functional.hessian(
            lambda z: F.cross_entropy(z, y, reduction="sum") / total, logits.detach()
        ).reshape(logits.numel(), logits.numel())
        G = G + J.T @ H_z @ J
    return G.detach()


def nan_case():
    """The "cnn" case with one NaN weight: every product must raise, never return NaN."""
    model, batches = make_case("cnn")
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    return model, batches
