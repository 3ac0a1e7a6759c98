"""The hand-derived second derivative of BatchNorm against finite differences and PyTorch's own."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hessdepth.batchnorm import batch_norm, fast_batchnorm_hessian


def _inputs(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 1).requires_grad_()
    weight, bias = (torch.randn(shape[1], generator=gen, dtype=torch.float64).requires_grad_() for _ in range(2))
    running = (
        torch.randn(shape[1], generator=gen, dtype=torch.float64),
        torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.5,
    )
    return x, weight, bias, running


@pytest.mark.parametrize("stats", ["batch", "running"])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 5), (2, 2, 3, 2, 2)])
def test_first_and_second_derivatives_match_finite_differences(shape, stats):
    x, weight, bias, running = _inputs(shape)
    mean, var = running if stats == "running" else (None, None)

    def f(x, weight, bias):
        return batch_norm(x, weight, bias, mean, var, eps=0.5)  # a large eps, so it is not neglected

    assert torch.autograd.gradcheck(f, (x, weight, bias))
    assert torch.autograd.gradgradcheck(f, (x, weight, bias))


def _second_derivatives(fn, x, weight, bias, seed=1):
    """Derivatives of <v, grad(<gy, fn>)> with respect to x, weight and gy, for random v and gy."""
    gen = torch.Generator().manual_seed(seed)
    gy = torch.randn(x.shape, generator=gen, dtype=x.dtype).requires_grad_()
    grads = torch.autograd.grad(fn(x, weight, bias), (x, weight, bias), gy, create_graph=True)
    vs = [torch.randn(g.shape, generator=gen, dtype=g.dtype) for g in grads]
    return torch.autograd.grad(grads, (x, weight, gy), vs, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("stats", ["batch", "running"])
def test_agrees_with_pytorchs_double_backward(stats):
    x, weight, bias, running = _inputs((8, 4, 3, 3), seed=2)
    mean, var = running if stats == "running" else (None, None)
    training = stats == "batch"
    native = _second_derivatives(
        lambda *a: F.batch_norm(a[0], mean, var, a[1], a[2], training, 0.1, 1e-5), x, weight, bias
    )
    ours = _second_derivatives(lambda *a: batch_norm(*a, mean, var, eps=1e-5), x, weight, bias)
    for a, b in zip(ours, native):
        assert (a - b).norm() <= 1e-12 * b.norm()


def _routed(module, x):
    """Whether the module's forward went through the hand-derived path inside the context."""
    with fast_batchnorm_hessian():
        y = module(x)
    return type(y.grad_fn).__name__ == "_BatchNormBackward"


def test_only_calls_that_update_no_running_statistics_are_routed():
    x = torch.randn(4, 3, 2, 2, requires_grad=True)
    batch_stats = nn.BatchNorm2d(3, track_running_stats=False).train()
    assert _routed(batch_stats, x)
    assert _routed(nn.BatchNorm2d(3).eval(), x)  # reads running statistics
    before = nn.BatchNorm2d(3).train()
    assert not _routed(before, x)  # updates running statistics: PyTorch's own
    assert before.num_batches_tracked == 1
    assert not _routed(nn.BatchNorm2d(3, affine=False, track_running_stats=False).train(), x)
    assert type(batch_stats(x).grad_fn).__name__ != "_BatchNormBackward"  # outside the context
