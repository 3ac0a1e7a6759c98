"""HessianOperator against the exact (finite-difference-checked) Hessians of tiny float64 models."""

import copy

import pytest
import torch
from torch import nn

import hessdepth as hd
import tiny_models as tm

MODES = hd.BN_MODES


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", tm.CASES)
def test_reference_hessian_matches_finite_differences(name, mode):
    model, batches = tm.make_case(name)
    H = tm.case_hessian(name, mode)
    assert _rel(H, H.T) < 1e-12
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(len(H), generator=gen, dtype=torch.float64)
        v /= v.norm()
        assert _rel(tm.fd_hvp(model, batches, mode, v, h=1e-5), H @ v) < 1e-7


def test_bn_modes_give_different_hessians():
    assert _rel(tm.case_hessian("cnn", "batch"), tm.case_hessian("cnn", "running")) > 1e-2


@pytest.mark.parametrize("composition", ["auto", *hd.COMPOSITIONS])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", tm.CASES)
def test_matvec_and_matmat_match_exact_hessian(name, mode, composition):
    model, batches = tm.make_case(name)
    H = tm.case_hessian(name, mode)
    op = hd.HessianOperator(model, batches, bn_mode=mode, composition=composition)
    assert (op.num_params, op.dtype, op.device) == (len(H), torch.float64, torch.device("cpu"))
    gen = torch.Generator().manual_seed(2)
    v = torch.randn(len(H), generator=gen, dtype=torch.float64)
    assert _rel(op.matvec(v), H @ v) < 1e-10
    V = torch.randn(3, len(H), generator=gen, dtype=torch.float64)
    HV = op.matmat(V)
    assert HV.shape == V.shape
    for row, v in zip(HV, V):
        assert _rel(row, H @ v) < 1e-10


def test_uneven_batches_weighted_by_sample_count():
    """The loss is the mean over samples, so the gradient equals one of the concatenated data."""
    model, batches = tm.make_case("mlp")
    model = model.eval()  # running-stat BN: the loss is a plain per-sample mean
    op = hd.HessianOperator(model, batches, bn_mode="running")
    whole = hd.HessianOperator(model, [tuple(torch.cat(t) for t in zip(*batches))], bn_mode="running")
    assert _rel(op.gradient(), whole.gradient()) < 1e-12
    assert op.loss() == pytest.approx(whole.loss(), rel=1e-12)
    v = torch.randn(op.num_params, dtype=torch.float64)
    assert _rel(op.matvec(v), whole.matvec(v)) < 1e-12


@pytest.mark.parametrize("mode", MODES)
def test_gradient_and_loss_match_plain_autograd(mode):
    model, batches = tm.make_case("cnn")
    ref = copy.deepcopy(model).train(mode == "batch")
    loss = tm._mean_loss(ref, batches)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    op = hd.HessianOperator(model, batches, bn_mode=mode)
    assert op.loss() == pytest.approx(loss.item(), rel=1e-12)
    assert op.gradient().dtype == torch.float64
    assert _rel(op.gradient(), torch.cat([g.reshape(-1) for g in grads])) < 1e-12


@pytest.mark.parametrize("mode", MODES)
def test_running_stats_and_modes_untouched(mode):
    model, batches = tm.make_case("resnet")
    model.fc.train(False)  # a non-BN module's own mode is kept and restored
    before = {k: b.clone() for k, b in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    op = hd.HessianOperator(model, batches, bn_mode=mode)
    op.matvec(torch.randn(op.num_params, dtype=torch.float64))
    op.matmat(torch.randn(2, op.num_params, dtype=torch.float64))
    op.gradient(), op.loss()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # bit-identical buffers and parameters
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_float32_operator_returns_input_dtype_and_agrees():
    model, batches = tm.make_case("mlp")
    H = tm.case_hessian("mlp", "batch")
    op = hd.HessianOperator(copy.deepcopy(model).float(), batches)
    assert op.dtype == torch.float32
    v = torch.randn(op.num_params, dtype=torch.float64)
    hv = op.matvec(v)
    assert hv.dtype == torch.float64
    assert _rel(hv, H @ v) < 1e-4  # float32 products, float64 accumulation
    assert op.matvec(v.float()).dtype == torch.float32


def test_nan_parameters_raise_operator_error():
    model, batches = tm.nan_case()
    op = hd.HessianOperator(model, batches)
    with pytest.raises(hd.OperatorError, match="NaN/Inf"):
        op.matvec(torch.ones(op.num_params, dtype=torch.float64))
    with pytest.raises(hd.OperatorError, match="NaN/Inf"):
        op.matmat(torch.ones(2, op.num_params, dtype=torch.float64))
    with pytest.raises(hd.OperatorError, match="NaN/Inf"):
        op.gradient()


def test_bad_arguments():
    model, batches = tm.make_case("mlp")
    with pytest.raises(ValueError, match="batch.*running"):
        hd.HessianOperator(model, batches, bn_mode="eval")
    with pytest.raises(ValueError, match="jvp_grad"):
        hd.HessianOperator(model, batches, composition="hessian")
    with pytest.raises(ValueError, match="empty"):
        hd.HessianOperator(model, [])
    op = hd.HessianOperator(model, batches)
    with pytest.raises(ValueError, match="shape"):
        op.matvec(torch.zeros(3))
    no_stats = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="running statistics"):
        hd.HessianOperator(no_stats.double(), batches, bn_mode="running")


@pytest.mark.parametrize("mode", MODES)
def test_checks_pass_on_a_good_operator(mode):
    model, batches = tm.make_case("cnn")
    op = hd.HessianOperator(model, batches, bn_mode=mode)
    assert op.check_symmetry(seed=0) < 1e-12
    assert op.check_repeatability(seed=0) == 0.0


@pytest.mark.parametrize("composition", ["double_backward", "double_backward_cached"])
def test_checks_raise_on_dropout_in_train_mode(composition):
    """Also with cached graphs, which would freeze one dropout mask: the checks build fresh ones."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 3)).double().train()
    _, batches = tm.make_case("mlp")
    op = hd.HessianOperator(model, batches, composition=composition)
    with pytest.raises(hd.OperatorError, match="not repeatable.*dropout.*shuffling.*running statistics"):
        op.check_repeatability()
    with pytest.raises(hd.OperatorError, match="not symmetric.*dropout"):
        op.check_symmetry()
    model.eval()
    assert op.check_repeatability() == 0.0


def test_symmetry_check_catches_a_nonsymmetric_matrix():
    A = torch.eye(4, dtype=torch.float64) + torch.triu(torch.ones(4, 4, dtype=torch.float64), 1)
    with pytest.raises(hd.OperatorError, match="not symmetric"):
        hd.MatrixOperator(A).check_symmetry()
    assert hd.MatrixOperator(A + A.T).check_symmetry() < 1e-14


def test_matrix_operator_diagonal_and_dense():
    d = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    V = torch.randn(2, 3, dtype=torch.float64)
    assert torch.allclose(hd.MatrixOperator(d).matmat(V), V @ torch.diag(d))
    assert torch.allclose(hd.MatrixOperator(torch.diag(d)).matvec(V[0]), d * V[0])


def test_no_tf32_sets_and_restores_flags():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    matmul.fp32_precision = "tf32"
    try:
        with hd.no_tf32():
            assert matmul.fp32_precision == "ieee"
            assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before


def test_choose_device():
    assert hd.choose_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert hd.choose_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            hd.choose_device("cuda")


def test_cached_graphs_follow_parameter_changes():
    model, batches = tm.make_case("cnn")
    op = hd.HessianOperator(model, batches, bn_mode="batch", composition="double_backward_cached")
    v = torch.randn(op.num_params, dtype=torch.float64)
    first = op.matvec(v)
    assert torch.equal(op.matvec(v), first)  # reused graphs, same numbers
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    moved = op.matvec(v)
    assert _rel(moved, tm.exact_hessian(model, batches, "batch") @ v) < 1e-10
    assert _rel(moved, first) > 1e-3


def test_auto_caches_graphs_only_when_they_fit():
    model, batches = tm.make_case("cnn")
    roomy = hd.HessianOperator(model, batches)
    assert roomy.composition == "double_backward_cached"
    # The estimate is the first batch's saved tensors scaled to every sample: at least the
    # inputs of every batch, at most a few hundred activations' worth of them.
    inputs = sum(x.numel() * x.element_size() for x, _ in roomy.batches)
    assert inputs <= roomy.graph_bytes <= 500 * inputs
    tight = hd.HessianOperator(model, batches, graph_cache_gb=0.5 * roomy.graph_bytes / 2**30)
    assert tight.composition == "double_backward"
    v = torch.randn(roomy.num_params, dtype=torch.float64)
    assert _rel(roomy.matvec(v), tight.matvec(v)) < 1e-12


def test_operator_runs_with_tf32_off_and_restores_it():
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(torch.backends.cuda.matmul.fp32_precision)
            return x

    model, batches = tm.make_case("mlp")
    model.append(Spy())
    op = hd.HessianOperator(model, batches)
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "tf32"
    try:
        op.matvec(torch.ones(op.num_params, dtype=torch.float64))
        op.gradient()
        assert seen and set(seen) == {"ieee"}
        assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision = before
