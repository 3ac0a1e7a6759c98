"""Quadrature and Hutchinson moments, and spectral statistics, against exact spectra."""

import numpy as np
import pytest
import torch
from scipy import stats as sps

import hessdepth as hd
import tiny_models as tm
from test_lanczos import outlier_spectrum, rotated


def exact_stats(lam):
    lam = np.asarray(lam)
    return {
        "mean": lam.mean(),
        "std": lam.std(),
        "skewness": sps.skew(lam),
        "kurtosis": sps.kurtosis(lam, fisher=False),
    }


def heavy_tailed_spectrum(n=300):
    """Hessian-like: a bulk of Student-t(3) quantiles near 0 plus a few large outliers."""
    bulk = sps.t.ppf((np.arange(n - 5) + 0.5) / (n - 5), df=3)
    return np.concatenate([0.1 * bulk, [4.0, 6.0, 8.0, 12.0, 20.0]])


def test_quadrature_moments_equal_probe_moments():
    lam = outlier_spectrum(150)
    H = rotated(lam)
    spec = hd.slq(hd.MatrixOperator(H), iterations=30, probes=3, seed=0, kind="gaussian")
    got = hd.quadrature_moments(spec.nodes, spec.weights, kmax=4)
    assert got.shape == (3, 4)
    for p in range(3):
        q = hd.probe_vector(150, 0, p, "gaussian")
        q /= q.norm()
        for k in range(1, 5):
            exact = (q @ torch.linalg.matrix_power(H, k) @ q).item()
            assert got[p, k - 1] == pytest.approx(exact, abs=1e-10 * 10.0**k)


def test_quadrature_moments_on_a_hessian_and_with_padding():
    model, batches = tm.make_case("cnn")
    H = tm.case_hessian("cnn", "batch")
    spec = hd.slq(hd.HessianOperator(model, batches), iterations=4, probes=2, seed=3)
    got = hd.quadrature_moments(spec.nodes, spec.weights)
    norm = torch.linalg.matrix_norm(H, 2).item()
    for p in range(2):
        q = hd.probe_vector(len(H), 3, p)
        q /= q.norm()
        for k in range(1, 5):  # exact up to k = 2m - 1 = 7
            exact = (q @ torch.linalg.matrix_power(H, k) @ q).item()
            assert abs(got[p, k - 1] - exact) < 1e-10 * norm**k
    # NaN-padded rows (breakdown) contribute nothing; a 1-D row is one probe
    nodes = np.array([1.0, 2.0, np.nan]), np.array([0.25, 0.75, 0.0])
    np.testing.assert_allclose(hd.quadrature_moments(*nodes, kmax=2), [[1.75, 3.25]])


def test_hutchinson_within_four_standard_errors():
    lam = heavy_tailed_spectrum()
    op = hd.MatrixOperator(rotated(lam))
    res = hd.hutchinson_moments(op, probes=64, seed=0)
    assert res.probe_values.shape == (64, 4) and res.estimate.shape == res.stderr.shape == (4,)
    exact = np.array([np.mean(lam**k) for k in range(1, 5)])
    assert (np.abs(res.estimate - exact) < 4 * res.stderr).all()
    assert (res.stderr > 0).all()


def test_hutchinson_on_a_hessian_matches_definition_and_slq():
    model, batches = tm.make_case("resnet")
    H = tm.case_hessian("resnet", "running")
    op = hd.HessianOperator(model, batches, bn_mode="running")
    res = hd.hutchinson_moments(op, probes=3, seed=4, lockstep=3)
    n = len(H)
    for p in range(3):
        v = hd.probe_vector(n, 4, p)
        hv, hhv = H @ v, H @ H @ v
        expected = torch.stack([v @ hv, hv @ hv, hv @ hhv, hhv @ hhv]).numpy() / n
        np.testing.assert_allclose(res.probe_values[p], expected, rtol=1e-10)
    # same Rademacher probes, normalised: SLQ quadrature moments are the same numbers
    spec = hd.slq(op, iterations=3, probes=3, seed=4)
    np.testing.assert_allclose(hd.quadrature_moments(spec.nodes, spec.weights), res.probe_values, rtol=1e-9)


def test_hutchinson_resume_and_block_equal_full_run():
    op = hd.MatrixOperator(rotated(outlier_spectrum(60)))
    full = hd.hutchinson_moments(op, probes=6, seed=2, lockstep=1)
    saved = {}
    hd.hutchinson_moments(op, probes=6, seed=2, indices=[5, 0], lockstep=1, callback=saved.__setitem__)
    hd.hutchinson_moments(op, probes=6, seed=2, indices=[1, 2, 3, 4], lockstep=1, callback=saved.__setitem__)
    np.testing.assert_array_equal(np.stack([saved[i]["values"] for i in range(6)]), full.probe_values)
    together = hd.hutchinson_moments(op, probes=6, seed=2, lockstep=4)
    np.testing.assert_allclose(together.probe_values, full.probe_values, rtol=1e-12)


def test_stats_of_exact_moments_are_exact():
    lam = heavy_tailed_spectrum()
    moments = np.tile([np.mean(lam**k) for k in range(1, 5)], (5, 1))
    got = hd.spectral_stats(moments)
    for name, value in exact_stats(lam).items():
        assert got[name][0] == pytest.approx(value, rel=1e-9)
    gaussian = sps.norm.ppf((np.arange(20000) + 0.5) / 20000)
    moments = np.array([[np.mean(gaussian**k) for k in range(1, 5)]] * 2)
    assert hd.spectral_stats(moments)["kurtosis"][0] == pytest.approx(3.0, abs=0.01)  # not excess


@pytest.mark.parametrize("method", hd.moments.CI_METHODS)
@pytest.mark.parametrize("spectrum", ["outliers", "heavy_tailed"])
def test_known_spectrum_statistics_inside_intervals(spectrum, method):
    """One probe set, 99.9% intervals: all 16 checks of a spectrum pass for ~97% of probe seeds
    (with 95% intervals only ~55-85% would; test_bootstrap_interval_coverage checks those)."""
    lam = outlier_spectrum() if spectrum == "outliers" else heavy_tailed_spectrum()
    op = hd.MatrixOperator(rotated(lam, seed=1))
    truth = exact_stats(lam)
    hutch = hd.hutchinson_moments(op, probes=64, seed=0).probe_values
    spec = hd.slq(op, iterations=20, probes=32, seed=1)
    for per_probe in (hutch, hd.quadrature_moments(spec.nodes, spec.weights)):
        got = hd.spectral_stats(per_probe, confidence=0.999, method=method, seed=0)
        for name, (value, lo, hi) in got.items():
            assert lo < value < hi, name
            assert lo <= truth[name] <= hi, (name, truth[name], (value, lo, hi))


@pytest.mark.parametrize("method", hd.moments.CI_METHODS)
def test_interval_coverage(method):
    """Over 200 independent sets of 32 probes, nominal 95% intervals cover the truth 85-100%
    of the time (measured: about 90-93% on this heavy-tailed spectrum)."""
    lam = heavy_tailed_spectrum(100)
    op = hd.MatrixOperator(rotated(lam, seed=2))
    truth = exact_stats(lam)
    hits = {name: 0 for name in truth}
    reps = 200
    for seed in range(reps):
        values = hd.hutchinson_moments(op, probes=32, seed=seed, lockstep=32).probe_values
        for name, (_, lo, hi) in hd.spectral_stats(values, method=method, seed=seed, resamples=500).items():
            hits[name] += lo <= truth[name] <= hi
    coverage = {name: h / reps for name, h in hits.items()}
    assert all(0.85 <= c <= 1.0 for c in coverage.values()), coverage


def test_spectral_stats_arguments():
    moments = np.random.default_rng(0).normal(size=(1, 4)) + [0, 2, 0, 9]
    single = hd.spectral_stats(moments)
    assert all(np.isnan(lo) and np.isnan(hi) for _, lo, hi in single.values())
    with pytest.raises(ValueError, match="bootstrap"):
        hd.spectral_stats(np.ones((3, 4)), method="jackknife")
    with pytest.raises(ValueError, match="shape"):
        hd.spectral_stats(np.ones((3, 2)))
