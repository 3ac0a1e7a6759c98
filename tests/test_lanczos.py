"""Lanczos and SLQ against exact spectra (dense matrices with chosen eigenvalues, tiny Hessians)."""

import numpy as np
import pytest
import torch

import hessdepth as hd
import tiny_models as tm
from hessdepth.probes import LOCKSTEP_MEMORY_GB


def rotated(eigenvalues, seed=0, dtype=torch.float64):
    """Dense symmetric matrix Q diag(eigenvalues) Q' with a random orthogonal Q."""
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=gen, dtype=torch.float64))
    return ((Q * lam) @ Q.T).to(dtype)


def outlier_spectrum(n=300):
    """A bulk on [-1, 1] plus separated extremes at -3, 5 and 10."""
    return np.concatenate([np.linspace(-1, 1, n - 3), [-3.0, 5.0, 10.0]])


def test_probe_vector_is_a_function_of_seed_and_index():
    a = hd.probe_vector(1000, seed=3, index=7)
    assert torch.equal(a, hd.probe_vector(1000, seed=3, index=7))
    assert set(a.unique().tolist()) == {-1.0, 1.0} and a.dtype == torch.float64
    assert not torch.equal(a, hd.probe_vector(1000, seed=3, index=8))
    assert not torch.equal(a, hd.probe_vector(1000, seed=4, index=7))
    assert abs(a.mean().item()) < 0.15
    g = hd.probe_vector(1000, seed=3, index=7, kind="gaussian", dtype=torch.float32)
    assert g.dtype == torch.float32 and abs(g.std().item() - 1) < 0.1
    assert torch.equal(g, hd.probe_vector(1000, 3, 7, "gaussian", dtype=torch.float32))
    with pytest.raises(ValueError, match="rademacher"):
        hd.probe_vector(10, 0, 0, kind="uniform")


def test_full_lanczos_recovers_every_eigenvalue():
    lam = np.random.default_rng(0).standard_normal(120)
    op = hd.MatrixOperator(rotated(lam))
    alpha, beta = hd.lanczos(op, 120, hd.probe_vector(120, 0, 0))
    assert alpha.dtype == np.float64 and (len(alpha), len(beta)) == (120, 119)
    nodes, weights = hd.gauss_quadrature(alpha, beta)
    assert np.abs(np.sort(nodes) - np.sort(lam)).max() < 1e-8 * np.abs(lam).max()
    assert weights.sum() == pytest.approx(1, abs=1e-14)


def _cluster(values, tol):
    values = np.sort(values)
    return values[np.concatenate([[True], np.diff(values) > tol])]


def test_full_lanczos_on_a_tiny_hessian_recovers_its_spectrum():
    """m = n on the MLP Hessian. Its eigenvalue 0 is repeated (softmax shift invariance), so
    the Krylov space is smaller than n: Lanczos stops on breakdown, and its Ritz values are
    then the distinct eigenvalues."""
    model, batches = tm.make_case("mlp")
    lam = np.linalg.eigvalsh(tm.case_hessian("mlp", "batch").numpy())
    op = hd.HessianOperator(model, batches)
    alpha, beta = hd.lanczos(op, op.num_params, hd.probe_vector(op.num_params, 0, 0))
    nodes, _ = hd.gauss_quadrature(alpha, beta)
    tol = 1e-8 * np.abs(lam).max()
    assert len(alpha) < op.num_params  # breakdown at the repeated eigenvalue
    distance = np.abs(nodes[:, None] - lam[None, :])
    assert distance.min(axis=1).max() < tol  # every Ritz value is an eigenvalue
    assert distance.min(axis=0).max() < tol  # every eigenvalue is a Ritz value
    assert len(_cluster(nodes, 1e-6)) == len(_cluster(lam, 1e-6))


def test_thirty_steps_find_separated_extreme_eigenvalues():
    """With lambda_max = 10, lambda_2 = 5 and lambda_min = -3 next to a bulk in [-1, 1], the
    Kaniel-Paige bound puts both extreme Ritz values after 30 steps within ~1e-15 relative."""
    lam = outlier_spectrum()
    op = hd.MatrixOperator(rotated(lam))
    nodes, _ = hd.gauss_quadrature(*hd.lanczos(op, 30, hd.probe_vector(len(lam), 0, 0)))
    assert nodes.max() == pytest.approx(10.0, rel=1e-6)
    assert nodes.min() == pytest.approx(-3.0, rel=1e-6)


def test_float32_operator_gives_float64_tridiagonal():
    lam = outlier_spectrum()
    H = rotated(lam)
    a64, b64 = hd.lanczos(hd.MatrixOperator(H), 20, hd.probe_vector(len(lam), 0, 0))
    a32, b32 = hd.lanczos(hd.MatrixOperator(H.float()), 20, hd.probe_vector(len(lam), 0, 0))
    assert a32.dtype == np.float64 and len(a32) == 20
    assert np.abs(a32 - a64).max() < 1e-5 * 10  # float32 products, float64 recurrence


def test_breakdown_stops_cleanly_and_slq_pads():
    distinct = np.array([-1.0, 2.0, 5.0])
    op = hd.MatrixOperator(torch.tensor(np.repeat(distinct, 20)))  # diagonal, three eigenvalues
    alpha, beta = hd.lanczos(op, 10, hd.probe_vector(60, 0, 0))
    assert (len(alpha), len(beta)) == (3, 2)
    spec = hd.slq(op, iterations=10, probes=2, seed=0)
    assert spec.steps.tolist() == [3, 3] and spec.breakdown
    assert spec.alpha.shape == (2, 10) and spec.beta.shape == (2, 9)
    # padding: a decoupled diagonal at the largest node with weight 0, consistent with (alpha, beta)
    assert (spec.beta[:, 2:] == 0).all() and (spec.alpha[:, 3:] == spec.nodes[:, 3:]).all()
    np.testing.assert_allclose(spec.nodes[:, 3:], 5, atol=1e-12)
    assert (spec.weights[:, 3:] == 0).all() and np.isclose(spec.nodes.max(), 5) and np.isclose(spec.nodes.min(), -1)
    for row in range(2):
        nodes, weights = hd.gauss_quadrature(spec.alpha[row], spec.beta[row])
        np.testing.assert_allclose(np.sort(nodes), np.sort(spec.nodes[row]), atol=1e-12)
        np.testing.assert_allclose(np.sort(weights), np.sort(spec.weights[row]), atol=1e-12)
    np.testing.assert_allclose(spec.nodes[:, :3], np.tile(distinct, (2, 1)), atol=1e-12)
    # Gauss weights are the probe's mass on each eigenspace: |v_i|^2 / |v|^2 = 20/60 for +-1 entries.
    np.testing.assert_allclose(spec.weights[:, :3], 1 / 3, atol=1e-12)
    # A float32 operator breaks down too (tolerance scales with the operator's epsilon).
    op32 = hd.MatrixOperator(torch.tensor(np.repeat(distinct, 20), dtype=torch.float32))
    assert len(hd.lanczos(op32, 10, hd.probe_vector(60, 0, 0))[0]) == 3


def test_slq_shapes_weights_and_metadata():
    lam = outlier_spectrum(100)
    op = hd.MatrixOperator(rotated(lam))
    spec = hd.slq(op, iterations=12, probes=3, seed=5, kind="gaussian", lockstep=2)
    assert spec.alpha.shape == (3, 12) and spec.beta.shape == (3, 11)
    assert spec.nodes.shape == spec.weights.shape == (3, 12)
    assert spec.steps.tolist() == [12] * 3 and not spec.breakdown
    assert spec.indices.tolist() == [0, 1, 2] and (spec.seconds > 0).all()
    np.testing.assert_allclose(spec.weights.sum(axis=1), 1, atol=1e-13)
    assert spec.basis_bytes == 2 * 12 * 100 * 8  # two probes' float64 bases held at once
    # the row for probe i is the Lanczos run from probe_vector(n, seed, i, kind)
    alpha, _ = hd.lanczos(op, 12, hd.probe_vector(100, 5, 1, "gaussian"))
    np.testing.assert_allclose(spec.alpha[1], alpha, rtol=1e-12)


def test_slq_resume_by_indices_equals_full_run():
    op = hd.MatrixOperator(rotated(outlier_spectrum(80)))
    full = hd.slq(op, iterations=15, probes=5, seed=1, lockstep=1)
    saved = {}
    first = hd.slq(op, iterations=15, probes=5, seed=1, lockstep=1, indices=[0, 3], callback=saved.__setitem__)
    assert sorted(saved) == [0, 3] and first.indices.tolist() == [0, 3]
    hd.slq(op, iterations=15, probes=5, seed=1, lockstep=1, indices=[4, 1, 2], callback=saved.__setitem__)
    for key in ("alpha", "beta", "nodes", "weights", "steps"):
        resumed = np.stack([saved[i][key] for i in range(5)])
        np.testing.assert_array_equal(resumed, getattr(full, key))  # bit-identical
    # in lockstep groups a resumed run regroups the probes: equal up to rounding
    grouped = {}
    hd.slq(op, iterations=15, probes=5, seed=1, indices=[4, 1, 2], lockstep=3, callback=grouped.__setitem__)
    np.testing.assert_allclose(
        np.stack([grouped[i]["nodes"] for i in (4, 1, 2)]), full.nodes[[4, 1, 2]], atol=1e-12 * 10
    )


@pytest.mark.parametrize("mode", hd.BN_MODES)
def test_lockstep_equals_one_at_a_time_on_a_hessian(mode):
    model, batches = tm.make_case("cnn")
    op = hd.HessianOperator(model, batches, bn_mode=mode)
    one = hd.slq(op, iterations=8, probes=3, seed=2, lockstep=1)
    three = hd.slq(op, iterations=8, probes=3, seed=2, lockstep=3)
    scale = np.abs(one.nodes).max()
    np.testing.assert_allclose(three.alpha, one.alpha, atol=1e-10 * scale)
    np.testing.assert_allclose(three.nodes, one.nodes, atol=1e-10 * scale)
    np.testing.assert_allclose(three.weights, one.weights, atol=1e-10)


@pytest.mark.parametrize("mode", hd.BN_MODES)
def test_probes_sharing_each_batchs_graph_give_bitwise_the_one_at_a_time_results(mode):
    """Uncached double backward: "auto" runs every probe in lockstep, each row's product computed
    exactly as alone (one first-order graph per batch, one second backward per probe)."""
    model, batches = tm.make_case("cnn")
    op = hd.HessianOperator(model, batches, bn_mode=mode, composition="double_backward")
    assert op.shares_graphs and hd.lockstep_size(op, probes=3) == 3
    one = hd.slq(op, iterations=8, probes=3, seed=2, lockstep=1)
    together = hd.slq(op, iterations=8, probes=3, seed=2)
    for key in ("alpha", "beta", "nodes", "weights", "steps"):
        np.testing.assert_array_equal(getattr(together, key), getattr(one, key))
    np.testing.assert_array_equal(
        hd.hutchinson_moments(op, probes=3, seed=1).probe_values,
        hd.hutchinson_moments(op, probes=3, seed=1, lockstep=1).probe_values,
    )


def test_lockstep_size_policy():
    model, batches = tm.make_case("cnn")
    cached = hd.HessianOperator(model, batches, composition="double_backward_cached")
    uncached = hd.HessianOperator(model, batches, composition="double_backward")
    lockstep_size = hd.lockstep_size
    assert lockstep_size(cached, probes=10) == 1  # a kept graph: nothing to share
    assert lockstep_size(uncached, probes=10) == 10
    first = next(name for name, _ in model.named_parameters())
    assert lockstep_size(hd.block(uncached, [first]), probes=10) == 10  # a block's products are H's
    gib = 2**30
    assert lockstep_size(uncached, probes=10, bytes_per_probe=gib) == int(LOCKSTEP_MEMORY_GB)
    assert lockstep_size(uncached, probes=10, bytes_per_probe=100 * gib) == 1
    assert lockstep_size(cached, probes=10, lockstep=4) == 4  # asked for: kept
    for bad in (0, -1, 2.5, "many", True):
        with pytest.raises(ValueError, match="lockstep must be 'auto' or an integer >= 1"):
            lockstep_size(cached, probes=10, lockstep=bad)


def test_progress_bar_writes_to_stderr(capsys):
    op = hd.MatrixOperator(torch.arange(1.0, 11.0, dtype=torch.float64))
    hd.slq(op, iterations=4, probes=2, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "lanczos" in captured.err


def test_lanczos_rejects_bad_inputs():
    op = hd.MatrixOperator(torch.tensor([1.0, float("nan"), 2.0], dtype=torch.float64))
    with pytest.raises(hd.OperatorError, match="NaN/Inf"):
        hd.lanczos(op, 3, torch.ones(3))
    with pytest.raises(ValueError, match="nonzero"):
        hd.lanczos(op, 3, torch.zeros(3))


class Diagonal(hd.LinearOperator):
    """A user's own operator: matvec alone, matmat and the checks from the base class."""

    def __init__(self, diagonal: torch.Tensor):
        self.diagonal = diagonal
        self.num_params, self.device, self.dtype = len(diagonal), diagonal.device, diagonal.dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.diagonal * v


def test_a_users_operator_with_matvec_alone_gives_the_matrix_operators_results():
    diagonal = torch.linspace(-1.0, 3.0, 40, dtype=torch.float64)
    mine, reference = Diagonal(diagonal), hd.MatrixOperator(diagonal)
    assert isinstance(mine, hd.Operator) and mine.check_symmetry() < 1e-12
    for lockstep in (1, 3):
        ours, theirs = hd.slq(mine, 12, 3, lockstep=lockstep), hd.slq(reference, 12, 3, lockstep=lockstep)
        np.testing.assert_allclose(ours.nodes, theirs.nodes, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            hd.hutchinson_moments(mine, 4, lockstep=lockstep).estimate, hd.hutchinson_moments(reference, 4).estimate
        )


def test_an_object_that_is_not_an_operator_is_told_what_it_lacks():
    class MatvecOnly:
        num_params, device, dtype = 5, torch.device("cpu"), torch.float64

        def matvec(self, v):
            return v

    for run in (
        lambda op: hd.slq(op, 3, 1),
        lambda op: hd.hutchinson_moments(op, 2),
        lambda op: hd.lanczos(op, 3, torch.ones(5)),
    ):
        with pytest.raises(TypeError, match="MatvecOnly is not a hessdepth operator: it lacks matmat.*LinearOperator"):
            run(MatvecOnly())
