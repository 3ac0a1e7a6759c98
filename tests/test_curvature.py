"""Blocks, Gauss-Newton and remainder operators against dense float64 ground truth on tiny models."""

import numpy as np
import pytest
import torch
from torch import nn

import hessdepth as hd
import tiny_models as tm
from test_lanczos import rotated

MODES = hd.BN_MODES


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def dense(op):
    """The operator's matrix, column j = op times the j-th unit vector (one matmat)."""
    return op.matmat(torch.eye(op.num_params, dtype=torch.float64)).T


def where(model, names):
    """Flat indices of the parameters named in ``names``, counted here independently."""
    out, offset = [], 0
    for name, p in model.named_parameters():
        if name in names:
            out += range(offset, offset + p.numel())
        offset += p.numel()
    return torch.tensor(out)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "names, expected",
    [
        (
            "layer2.",
            [
                "layer2.0.conv1.weight",
                "layer2.0.bn1.weight",
                "layer2.0.bn1.bias",
                "layer2.0.conv2.weight",
                "layer2.0.bn2.weight",
                "layer2.0.bn2.bias",
            ],
        ),
        # whole name components only: "conv1.weight" and "bn1" are not layer1.0.conv1.weight, layer1.0.bn1.*
        (
            ["fc", "conv1.weight", "bn1", "layer3.0.bn2."],
            [
                "conv1.weight",
                "bn1.weight",
                "bn1.bias",
                "layer3.0.bn2.weight",
                "layer3.0.bn2.bias",
                "fc.weight",
                "fc.bias",
            ],
        ),
    ],
)
def test_block_of_a_hessian_is_its_exact_sub_block(names, expected, mode):
    model, batches = tm.make_case("resnet")
    sub = tm.case_hessian("resnet", mode)[where(model, expected)][:, where(model, expected)]
    op = hd.block(hd.HessianOperator(model, batches, bn_mode=mode), names)
    assert (op.num_params, op.dtype, op.device) == (len(sub), torch.float64, torch.device("cpu"))
    assert _rel(dense(op), sub) < 1e-9
    v = torch.randn(len(sub), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert _rel(op.matvec(v), sub @ v) < 1e-9


@pytest.mark.parametrize("arch", ["resnet", "simple"])
def test_natural_resnet_blocks_partition_the_parameters(arch):
    model = hd.build_model(arch, 14, width=2)
    blocks = {name: hd.parameter_indices(model, prefixes) for name, prefixes in hd.resnet_blocks().items()}
    assert list(blocks) == ["input", "stage1", "stage2", "stage3", "classifier"]
    assert torch.equal(torch.cat(list(blocks.values())), torch.arange(hd.count_params(model)))
    assert (len(blocks["input"]), len(blocks["classifier"])) == (3 * 2 * 9 + 2 * 2, 8 * 10 + 10)


def test_blocks_of_a_block_diagonal_matrix_reproduce_its_spectrum():
    sizes = (4, 7, 5)
    A = torch.block_diag(*[rotated(np.linspace(-1, 3, s) * (i + 1) + i, seed=i) for i, s in enumerate(sizes)])
    perm = torch.randperm(len(A), generator=torch.Generator().manual_seed(0))
    A = A[perm][:, perm]  # the blocks' coordinates interleaved
    position = perm.argsort()  # of each original coordinate
    op = hd.MatrixOperator(A)
    pieces, start = [], 0
    for size in sizes:
        B = hd.BlockOperator(op, position[start : start + size])
        start += size
        lam = torch.linalg.eigvalsh(dense(B))
        nodes, _ = hd.gauss_quadrature(*hd.lanczos(B, size, hd.probe_vector(size, 0, 0)))  # full Lanczos
        np.testing.assert_allclose(np.sort(nodes), lam.numpy(), atol=1e-10)
        pieces.append(lam)
    torch.testing.assert_close(torch.cat(pieces).sort().values, torch.linalg.eigvalsh(A), rtol=0, atol=1e-12)
    # indices are sorted and deduplicated
    torch.testing.assert_close(dense(hd.BlockOperator(op, [3, 1, 1])), A[[1, 3]][:, [1, 3]], rtol=0, atol=0)


def test_the_hessian_and_gauss_newton_operators_are_siblings_over_one_loss():
    assert not issubclass(hd.GaussNewtonOperator, hd.HessianOperator)
    assert issubclass(hd.GaussNewtonOperator, hd.LossOperator) and issubclass(hd.HessianOperator, hd.LossOperator)
    model, batches = tm.make_case(tm.CASES[0])
    hessian, gauss_newton = hd.HessianOperator(model, batches), hd.GaussNewtonOperator(model, batches)
    assert gauss_newton.loss() == hessian.loss() and torch.equal(gauss_newton.gradient(), hessian.gradient())
    assert not gauss_newton.shares_graphs  # its matmat is one vmap per batch


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", tm.CASES)
def test_gauss_newton_matches_dense_jacobian_product(name, mode):
    model, batches = tm.make_case(name)
    reference = tm.case_gauss_newton(name, mode)
    op = hd.GaussNewtonOperator(model, batches, bn_mode=mode)
    assert (op.num_params, op.dtype, op.composition) == (len(reference), torch.float64, "gauss_newton")
    G = dense(op)
    assert _rel(G, reference) < 1e-9
    v = torch.randn(len(G), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert _rel(op.matvec(v), reference @ v) < 1e-9
    assert _rel(G, G.T) < 1e-12
    assert torch.linalg.eigvalsh(G).min() >= -1e-10
    assert _rel(G, tm.case_hessian(name, mode)) > 1e-2  # nonlinear logits: G is not H


@pytest.mark.parametrize("mode", MODES)
def test_gauss_newton_is_the_hessian_of_a_linear_model(mode):
    torch.manual_seed(0)
    model = nn.Linear(5, tm.NUM_CLASSES).double()
    _, batches = tm.make_case("mlp")
    H = tm.exact_hessian(model, batches, mode)
    assert _rel(dense(hd.GaussNewtonOperator(model, batches, bn_mode=mode)), H) < 1e-12


@pytest.mark.parametrize("mode", MODES)
def test_remainder_is_hessian_minus_gauss_newton(mode):
    model, batches = tm.make_case("resnet")
    H = hd.HessianOperator(model, batches, bn_mode=mode)
    R = hd.DifferenceOperator(H, hd.GaussNewtonOperator(model, batches, bn_mode=mode))
    expected = tm.case_hessian("resnet", mode) - tm.case_gauss_newton("resnet", mode)
    assert _rel(dense(R), expected) < 1e-9
    assert torch.linalg.eigvalsh(expected).min() < -1e-3 * torch.linalg.matrix_norm(expected, 2)  # indefinite
    idx = where(model, [n for n, _ in model.named_parameters() if n.startswith("layer3.")])
    assert _rel(dense(hd.block(R, "layer3.", model=model)), expected[idx][:, idx]) < 1e-9
    fc = where(model, ["fc.weight", "fc.bias"])
    assert expected[fc][:, fc].abs().max() < 1e-12  # the logits are linear in the classifier


@pytest.mark.parametrize("mode", MODES)
def test_slq_and_hutchinson_on_a_block_and_on_gauss_newton(mode):
    model, batches = tm.make_case("resnet")
    H = hd.HessianOperator(model, batches, bn_mode=mode)
    idx = where(model, [n for n, _ in model.named_parameters() if n.startswith("layer3.")])
    cases = [
        (hd.block(H, "layer3."), tm.case_hessian("resnet", mode)[idx][:, idx]),
        (hd.GaussNewtonOperator(model, batches, bn_mode=mode), tm.case_gauss_newton("resnet", mode)),
    ]
    for op, A in cases:
        res = hd.hutchinson_moments(op, probes=32, seed=4, lockstep=8)
        n = len(A)
        V = torch.stack([hd.probe_vector(n, 4, p) for p in range(32)])
        AV, AAV = V @ A, V @ A @ A
        expected = torch.stack([(V * AV).sum(1), (AV * AV).sum(1), (AV * AAV).sum(1), (AAV * AAV).sum(1)], 1) / n
        np.testing.assert_allclose(res.probe_values, expected.numpy(), rtol=1e-9)
        traces = np.array([torch.trace(torch.linalg.matrix_power(A, k)).item() / n for k in range(1, 5)])
        assert (np.abs(res.estimate - traces) < 4 * res.stderr).all()
        # the same probes, normalised: SLQ quadrature moments are the same numbers
        spec = hd.slq(op, iterations=3, probes=3, seed=4)
        np.testing.assert_allclose(hd.quadrature_moments(spec.nodes, spec.weights), res.probe_values[:3], rtol=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_gauss_newton_leaves_the_model_as_it_was(mode):
    model, batches = tm.make_case("resnet")
    before = {k: b.clone() for k, b in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    op = hd.GaussNewtonOperator(model, batches, bn_mode=mode)
    assert op.check_symmetry() < 1e-12 and op.check_repeatability() == 0.0
    op.matmat(torch.randn(2, op.num_params, dtype=torch.float64))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_gauss_newton_nan_parameters_raise():
    op = hd.GaussNewtonOperator(*tm.nan_case())
    with pytest.raises(hd.OperatorError, match="NaN/Inf in the Gauss-Newton-vector product"):
        op.matvec(torch.ones(op.num_params, dtype=torch.float64))


def test_unknown_block_names_raise_and_name_them():
    model, batches = tm.make_case("resnet")
    op = hd.HessianOperator(model, batches)
    with pytest.raises(ValueError, match=r"\['layer4\.', 'conv9'\]; valid.*'layer1\.'.*'fc\.weight'"):
        hd.block(op, ["layer4.", "fc.weight", "conv9"])
    with pytest.raises(ValueError, match=r"\['layer1\.0\.conv'\]"):  # not a whole name component
        hd.block(op, "layer1.0.conv")
    with pytest.raises(ValueError, match="no parameter names"):
        hd.block(op, [])


def test_bad_operator_arguments():
    model, batches = tm.make_case("resnet")
    H = hd.HessianOperator(model, batches)
    with pytest.raises(ValueError, match="within"):
        hd.BlockOperator(H, [0, H.num_params])
    with pytest.raises(ValueError, match="no model"):
        hd.block(hd.MatrixOperator(torch.eye(H.num_params)), "fc.")
    with pytest.raises(ValueError, match="parameter count"):
        hd.block(hd.MatrixOperator(torch.eye(5)), "fc.", model=model)
    with pytest.raises(ValueError, match="different dimensions"):
        hd.DifferenceOperator(H, hd.MatrixOperator(torch.eye(5)))
    with pytest.raises(ValueError, match="shape"):
        hd.block(H, "fc.").matvec(torch.zeros(3))
