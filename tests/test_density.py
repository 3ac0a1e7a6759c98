"""Gaussian-smoothed spectral density from quadrature nodes and weights."""

import numpy as np
import pytest
import torch

import hessdepth as hd
from test_lanczos import outlier_spectrum, rotated

DISTINCT = np.array([-1.0, 2.0, 5.0])


def three_eigenvalue_spectrum():
    op = hd.MatrixOperator(torch.tensor(np.repeat(DISTINCT, [10, 20, 30]), dtype=torch.float64))
    return hd.slq(op, iterations=10, probes=4, seed=0)  # breaks down after 3 steps: NaN padding


def test_density_integrates_to_one_and_peaks_at_eigenvalues():
    spec = three_eigenvalue_spectrum()
    grid, dens = hd.density(spec.nodes, spec.weights)
    assert np.trapezoid(dens, grid) == pytest.approx(1, abs=1e-8)
    interior = np.flatnonzero((dens[1:-1] > dens[:-2]) & (dens[1:-1] > dens[2:])) + 1
    spacing = grid[1] - grid[0]
    np.testing.assert_allclose(grid[interior], DISTINCT, atol=spacing)
    # peak heights: mass 1/6, 1/3, 1/2 over a kernel of variance sigma2 * (5 - -1)
    width = np.sqrt(1e-5 * 6)
    np.testing.assert_allclose(dens[interior], np.array([1, 2, 3]) / 6 / (width * np.sqrt(2 * np.pi)), rtol=1e-3)


def test_kernel_variance_is_sigma2_times_range_at_least_one():
    nodes, weights = np.array([[0.0, 0.3]]), np.array([[0.5, 0.5]])  # range < 1: variance sigma2
    grid, dens = hd.density(nodes, weights, grid=np.array([0.0]), sigma2=1e-3)
    assert dens[0] == pytest.approx(0.5 / np.sqrt(2 * np.pi * 1e-3), rel=1e-6)
    nodes = np.array([[0.0, 100.0]])  # range 100: variance 100 sigma2
    grid, dens = hd.density(nodes, weights, grid=np.array([0.0]), sigma2=1e-3)
    assert dens[0] == pytest.approx(0.5 / np.sqrt(2 * np.pi * 0.1), rel=1e-6)


def test_normalized_density_is_the_density_of_lambda_over_std():
    op = hd.MatrixOperator(rotated(outlier_spectrum(80)))
    spec = hd.slq(op, iterations=20, probes=3, seed=0)
    grid, dens = hd.density(spec.nodes, spec.weights)
    ngrid, ndens = hd.density(spec.nodes, spec.weights, normalize=True)
    assert np.trapezoid(ndens, ngrid) == pytest.approx(1, abs=1e-8)
    moments = hd.quadrature_moments(spec.nodes, spec.weights, kmax=2).mean(axis=0)
    std = np.sqrt(moments[1] - moments[0] ** 2)
    np.testing.assert_allclose(ngrid * std, grid, rtol=1e-12)  # same points, std units, not centred
    np.testing.assert_allclose(ndens / std, dens, rtol=1e-10, atol=1e-12 * dens.max())
    # a caller's grid is taken in std units
    _, at = hd.density(spec.nodes, spec.weights, grid=ngrid[::7], normalize=True)
    np.testing.assert_allclose(at, ndens[::7], rtol=1e-12)


def test_density_rejects_empty_or_nonfinite_spectra():
    with pytest.raises(ValueError, match="finite"):
        hd.density(np.array([[np.nan, 1.0]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="finite"):
        hd.density(np.array([[1.0]]), np.array([[0.0]]))


def local_maxima(values: np.ndarray, floor: float) -> int:
    inner = values[1:-1]
    return int(np.sum((inner > values[:-2]) & (inner > values[2:]) & (inner > floor)))


def bulk_and_outliers(seed: int = 0):
    """A wide bulk (semicircle-like) with a few outliers, seen through 2 probes x 20 Lanczos steps."""
    rng = np.random.default_rng(seed)
    eigs = np.concatenate([rng.normal(0, 1, 2000), [15.0, 22.0, 30.0, 40.0]])
    op = hd.MatrixOperator(torch.tensor(eigs, dtype=torch.float64))
    return hd.slq(op, iterations=20, probes=2, seed=seed)


def test_node_spacing_kernel_is_smooth_where_the_paper_kernel_is_a_comb():
    from hessdepth.density import cell_density, common_grid

    grid = common_grid([-20, 60], 4001)
    spacing = grid[1] - grid[0]
    spec = bulk_and_outliers()
    bulk = np.abs(grid) <= 3
    widths = hd.node_spacing_width(spec.nodes, spec.weights, 1.0)
    smooth = cell_density(spec.nodes, spec.weights, grid, 1e-5, width=widths)
    comb = cell_density(spec.nodes, spec.weights, grid, 1e-5)
    for dens in (smooth, comb):
        assert dens.sum() * spacing == pytest.approx(1, abs=0.01)
    floor = 1e-7 * smooth.max()
    assert local_maxima(smooth[bulk], floor) <= 2 and local_maxima(smooth, floor) <= 6
    assert local_maxima(comb[bulk], floor) > 5  # 40 nodes, a spike each: the rule can fail


def test_node_spacing_width_is_the_mean_gap_to_neighbours():
    nodes = np.array([[0.0, 1.0, 3.0, np.nan]])
    weights = np.array([[0.2, 0.5, 0.3, 0.0]])
    widths = hd.node_spacing_width(nodes, weights, 2.0)
    np.testing.assert_allclose(widths[0, :3], [2.0, 3.0, 4.0])
    assert np.isnan(widths[0, 3])
    with pytest.raises(ValueError, match="coincide"):
        hd.node_spacing_width(np.array([[1.0, 1.0]]), np.array([[0.5, 0.5]]), 1.0)
    # per-node widths: each node's Gaussian has its own width, and the mass is still 1
    grid, dens = hd.density(nodes, weights, width=widths, num_points=20001)
    assert np.trapezoid(dens, grid) == pytest.approx(1, abs=1e-6)
