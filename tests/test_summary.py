"""Summary table, per-model aggregation, verdicts and the results document."""

import math
import re

import h5py
import numpy as np
import pytest
from scipy import stats as sps

import fake_results as fr
from hessdepth import document, findings
from hessdepth.h5io import OutputError
from hessdepth.statistics import paired_comparison, seed_average
from hessdepth.density import cell_density, common_grid, density
from hessdepth.tables import read_csv, read_summary, write_csv, write_summary
from hessdepth.summary import (
    BY_MODEL_COLUMNS,
    BY_MODEL_RULE,
    COLUMNS,
    CURVATURE_BY_MODEL_COLUMNS,
    CURVATURE_COLUMNS,
    CURVATURE_STAT_COLUMNS,
    GN_COLUMNS,
    OUTLIER_COLUMNS,
    STAT_COLUMNS,
    aggregate_by_model,
    aggregate_curvature,
    summarize,
    summarize_curvature,
)

DENSITY = {"sigma2": 1e-5, "grid_points": 4001, "grid_range": [-20, 60]}
STATS = {"confidence": 0.95, "method": "bootstrap", "seed": 0}


def make_runs(tmp_path, runs, n=200):
    """Files for ``runs`` = [(arch, depth, seed, tail, loss, diverged)]; returns the three lists."""
    lists = {"lanczos": [], "moments": [], "checkpoints": []}
    for arch, depth, seed, tail, loss, diverged in runs:
        ident = fr.identity(arch, depth, seed)
        d = tmp_path / ident["model"] / f"seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        eigs = fr.spectrum(n, tail, seed)
        fr.write_lanczos(d / "lanczos.h5", eigs, ident, short=3, diverged=diverged)
        fr.write_moments(d / "moments.h5", eigs, ident, diverged=diverged)
        fr.write_checkpoint(d / "ckpt.h5", ident, loss, diverged=diverged)
        for key, name in (("lanczos", "lanczos.h5"), ("moments", "moments.h5"), ("checkpoints", "ckpt.h5")):
            lists[key].append(str(d / name))
    return lists


def test_summary_recovers_true_moments_and_densities(tmp_path):
    files = make_runs(tmp_path, [("resnet", 8, 0, 2.0, 0.5, False), ("simple", 8, 0, 8.0, 0.9, False)])
    summary = summarize(**files, density=DENSITY, stats=STATS)
    assert [r["model"] for r in summary.rows] == ["resnet8", "simple8"]
    for row, tail in zip(summary.rows, (2.0, 8.0)):
        eigs = fr.spectrum(200, tail, 0)
        truth = fr.true_stats(eigs)
        for stat, value in truth.items():
            assert row[f"slq_{stat}"] == pytest.approx(value, rel=1e-6)
            assert row[f"hutch_{stat}_lo"] <= row[f"hutch_{stat}_hi"]
        assert row["hutch_mean"] == pytest.approx(truth["mean"], rel=0.3)
        assert row["lambda_max"] == pytest.approx(eigs.max(), rel=1e-6)
        assert row["lambda_min"] >= eigs.min() - 1e-9
        assert row["train_loss"] == pytest.approx(0.5 if tail == 2.0 else 0.9)
        # statistics that do not grow with P: P / kurtosis, lambda_max x lr, the top eigenvalue's share
        p = row["n_params"]
        assert row["slq_outliers"] == pytest.approx(p / truth["kurtosis"], rel=1e-6)
        assert row["hutch_outliers_lo"] == pytest.approx(p / row["hutch_kurtosis_hi"])
        assert row["hutch_outliers_hi"] == pytest.approx(p / row["hutch_kurtosis_lo"])
        assert row["lr"] == 0.1 and row["lambda_max_lr"] == pytest.approx(0.1 * eigs.max(), rel=1e-6)
        squares_hat = p * (row["hutch_std"] ** 2 + row["hutch_mean"] ** 2)
        assert row["top_share"] == pytest.approx(eigs.max() ** 2 / squares_hat)
        # the fake's n_params is not len(eigs): the truth is lambda_max^2 / (P mean(lambda^2))
        assert row["top_share"] == pytest.approx(eigs.max() ** 2 / (p * (eigs**2).mean()), rel=0.5)
    assert summary.rows[1]["slq_kurtosis"] > summary.rows[0]["slq_kurtosis"]
    assert summary.density.shape == (2, 4001)
    spacing = summary.grid[1] - summary.grid[0]
    assert summary.density.sum(axis=1) * spacing == pytest.approx([1, 1], abs=0.01)


def test_cell_density_keeps_the_mass_on_coarse_grids(tmp_path):
    fr.write_lanczos(tmp_path / "l.h5", fr.spectrum(200, 8.0, 0), fr.identity("simple", 8))
    with h5py.File(tmp_path / "l.h5") as f:
        nodes, weights = f["nodes"][()], f["weights"][()]
    grid = common_grid([-20, 60], 101)
    _, points = density(nodes, weights, grid=grid, sigma2=1e-5, normalize=True)
    assert abs(points.sum() * 0.8 - 1) > 0.2  # kernel much narrower than the spacing
    cells = cell_density(nodes, weights, grid, 1e-5)
    assert cells.sum() * 0.8 == pytest.approx(1, abs=0.01) and (cells >= 0).all()


def test_written_tables_roundtrip(tmp_path):
    files = make_runs(
        tmp_path, [("resnet", 8, s, 2.0, 0.5, False) for s in range(3)] + [("simple", 8, 0, 8.0, 0.9, True)]
    )
    summary = summarize(**files, density=DENSITY, stats=STATS)
    by_model = aggregate_by_model(summary.rows, 0.95)
    out = tmp_path / "out"
    write_summary(out / "summary.h5", out / "summary.csv", out / "by_model.csv", summary, by_model, {"stats": STATS})
    rows = read_csv(out / "summary.csv")
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 4
    for row in rows[:3]:
        assert not row["diverged"] and row["synthetic"] is True
        assert all(math.isfinite(row[c]) for c in COLUMNS if isinstance(row[c], float))
    assert rows[3]["diverged"] and math.isnan(rows[3]["slq_kurtosis"])
    assert rows[:3] == [{c: r[c] for c in COLUMNS} for r in summary.rows[:3]]
    by_csv = read_csv(out / "by_model.csv")
    assert list(by_csv[0]) == list(BY_MODEL_COLUMNS)
    with h5py.File(out / "summary.h5") as f:
        assert set(COLUMNS) <= set(f) and f["density"].shape == (4, 4001)
        assert [m.decode() for m in f["model"][()]] == [r["model"] for r in rows]
        assert f["by_model/n_seeds"][()].tolist() == [3, 0]
        assert np.isnan(f["density"][3]).all()
    read, read_by_model = read_summary(out / "summary.h5")  # what the figures draw, as written
    assert read.rows[:3] == rows[:3] and read_by_model[0] == by_csv[0]
    np.testing.assert_array_equal(read.density, summary.density)
    np.testing.assert_array_equal(read.grid, summary.grid)


def test_mismatched_or_inconsistent_files_are_errors(tmp_path):
    files = make_runs(tmp_path, [("resnet", 8, 0, 2.0, 0.5, False), ("simple", 8, 0, 8.0, 0.9, False)])
    swapped = {**files, "checkpoints": files["checkpoints"][::-1]}
    with pytest.raises(OutputError, match="not the same run"):
        summarize(**swapped, density=DENSITY, stats=STATS)
    ident = fr.identity("resnet", 8)
    fr.write_lanczos(files["lanczos"][0], fr.spectrum(200, 2.0, 0), ident, diverged=True)
    with pytest.raises(OutputError, match="did not diverge"):
        summarize(**files, density=DENSITY, stats=STATS)


def by_model_row(arch, depth, kurt, lo, hi, step=10, diverged=False):
    row = dict.fromkeys(BY_MODEL_COLUMNS, np.nan)
    row.update(
        arch=arch,
        depth=depth,
        step=step,
        model=f"{arch}{depth}",
        diverged=diverged,
        n_seeds=1,
        n_diverged=0,
        slq_kurtosis=kurt,
        slq_kurtosis_lo=lo,
        slq_kurtosis_hi=hi,
    )
    return row


def test_aggregate_by_model_intervals():
    base = dict(
        dataset="synthetic",
        synthetic=True,
        arch="simple",
        depth=8,
        model="simple8",
        step=10,
        n_params=1,
        bn_mode="batch",
        train_loss=0.0,
        train_acc=0.0,
        test_loss=0.0,
        test_acc=0.0,
        lambda_min=0.0,
        lambda_max=0.0,
        lr=0.1,
        lambda_max_lr=0.0,
        top_share=0.0,
        diverged=False,
    )
    rows = []
    for seed, kurt in enumerate([3.0, 4.0, 8.0]):
        stats = STAT_COLUMNS + OUTLIER_COLUMNS
        row = {**base, "seed": seed, **{c: 1.0 for s in stats for c in (s, f"{s}_lo", f"{s}_hi")}}
        rows.append({**row, "slq_kurtosis": kurt, "slq_kurtosis_lo": kurt - 1, "slq_kurtosis_hi": kurt + 1})
    rows.append({**rows[0], "seed": 3, "diverged": True, "slq_kurtosis": 1e9})
    rows[1]["slq_mean"] = -2.0  # a column that is not log-scaled keeps the arithmetic t-interval
    (agg,) = aggregate_by_model(rows, 0.9)
    logk = np.log([3.0, 4.0, 8.0])
    lo, hi = np.exp(sps.t.interval(0.9, 2, loc=logk.mean(), scale=sps.sem(logk)))
    assert agg["slq_kurtosis"] == pytest.approx(np.exp(logk.mean()))  # geometric mean
    assert (agg["slq_kurtosis_lo"], agg["slq_kurtosis_hi"]) == pytest.approx((lo, hi))
    m = np.array([1.0, -2.0, 1.0])
    assert agg["slq_mean"] == pytest.approx(0.0)
    assert (agg["slq_mean_lo"], agg["slq_mean_hi"]) == pytest.approx(sps.t.interval(0.9, 2, loc=0, scale=sps.sem(m)))
    assert (agg["n_seeds"], agg["n_diverged"], agg["interval"]) == (3, 1, "seeds")
    (single,) = aggregate_by_model(rows[2:3], 0.9)
    assert (single["slq_kurtosis_lo"], single["slq_kurtosis_hi"], single["interval"]) == (7.0, 9.0, "probe")
    assert single["slq_kurtosis"] == 8.0
    assert math.isnan(single["train_loss_lo"])


def test_spearman_matches_scipy_and_exact_permutations():
    corr = findings.spearman([8, 14, 20, 32, 44], [1.0, 2.0, 3.0, 5.0, 4.0])
    assert corr.rho == pytest.approx(sps.spearmanr([8, 14, 20, 32, 44], [1, 2, 3, 5, 4]).statistic)
    perfect = findings.spearman([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert perfect.p == pytest.approx(2 / 120)
    assert findings.spearman([1, 2, 3], [1, 2, 3]).direction() == 0  # 3 points never decide
    assert math.isnan(findings.spearman([1, 1, 1], [1, 2, 3]).rho)
    equal_gaps = [np.log(0.07) - np.log(0.014), np.log(5), np.log(0.04) - np.log(0.008)]
    assert len(set(equal_gaps)) == 2 and math.isnan(findings.spearman([8, 14, 20], equal_gaps).rho)


def run_rows(kurtosis_of_depth, loss_of_depth, seeds=(0, 1, 2), depths=(8, 14, 20, 32, 44)):
    """Per-run rows: simple nets follow the given functions, ResNets stay flat (with seed noise)."""
    rows = []
    rng = np.random.default_rng(0)
    for arch in ("resnet", "simple"):
        for depth in depths:
            for seed in seeds:
                noise = 1 + 0.02 * rng.normal()
                kurt = (5.0 if arch == "resnet" else kurtosis_of_depth(depth)) * noise
                loss = (0.1 if arch == "resnet" else loss_of_depth(depth)) * noise
                rows.append(
                    dict(
                        arch=arch,
                        depth=depth,
                        seed=seed,
                        step=10,
                        model=f"{arch}{depth}",
                        diverged=False,
                        train_loss=loss,
                        slq_skewness=kurt / 2,
                        slq_kurtosis=kurt,
                        hutch_skewness=kurt / 2,
                        hutch_kurtosis=kurt,
                        slq_outliers=1000 * depth / kurt,
                        hutch_outliers=1000 * depth / kurt,
                    )
                )
    return rows


@pytest.mark.parametrize("sign, expected", [(1, findings.HOLDS), (-1, findings.REVERSED)])
def test_training_and_tails_verdicts(sign, expected):
    rows = run_rows(lambda d: 30 + sign * 0.5 * d, lambda d: 0.1 * np.exp(sign * 0.05 * (d - 8)))
    assert findings.training_verdict(rows, 10).verdict == expected
    assert findings.tails_verdict(rows, 10).verdict == expected


def test_noisy_data_are_not_resolved():
    rng = np.random.default_rng(1)
    rows = run_rows(lambda d: 20 + 10 * rng.normal(), lambda d: 0.1 * np.exp(rng.normal()))
    assert findings.training_verdict(rows, 10).verdict == findings.UNRESOLVED
    assert findings.tails_verdict(rows, 10).verdict == findings.UNRESOLVED


def test_diverged_simple_net_counts_as_slowest():
    rows = run_rows(lambda d: 20.0, lambda d: 0.1 * np.exp(0.05 * (d - 8)))
    for r in rows:
        if r["arch"] == "simple" and r["depth"] == 44:
            r.update(diverged=True, train_loss=np.nan)
    verdict = findings.training_verdict(rows, 10)
    assert verdict.verdict == findings.HOLDS and "n=15" in verdict.evidence


def paired_rows(ratio, noise=0.1, seeds=range(4), depths=(8, 14, 20, 26), slq_ratio=None, seed=0):
    """Per-run rows where simple / ResNet skewness and kurtosis = ``ratio(depth)`` x log-normal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for depth in depths:
        for s in seeds:
            base = 10 * np.exp(0.5 * rng.normal())  # seed-to-seed spread, shared by the pair
            for arch in ("resnet", "simple"):
                factor = ratio(depth) if arch == "simple" else 1.0
                check = (slq_ratio or ratio)(depth) if arch == "simple" else 1.0
                value = base * factor * np.exp(noise * rng.normal())
                rows.append(
                    dict(
                        arch=arch,
                        depth=depth,
                        seed=s,
                        step=10,
                        model=f"{arch}{depth}",
                        diverged=False,
                        train_loss=1.0,
                        hutch_skewness=value / 3,
                        hutch_kurtosis=value,
                        slq_skewness=value / factor * check / 3,
                        slq_kurtosis=value / factor * check,
                        hutch_outliers=1000 / value,  # one P for every model: the same story as the kurtosis
                    )
                )
    return rows


@pytest.mark.parametrize(
    "ratio, expected",
    [
        (lambda d: 3.0, findings.HOLDS),
        (lambda d: 1 / 3, findings.REVERSED),
        (lambda d: 1.0, findings.UNRESOLVED),
        (lambda d: 3.0 if d < 20 else 1 / 3, findings.UNRESOLVED),
    ],
)
def test_residual_verdict_pairs_runs_by_depth_and_seed(ratio, expected):
    verdict = findings.residual_verdict(paired_rows(ratio), 10)
    assert verdict.verdict == expected
    assert "n=16 pairs" in verdict.evidence and "SLQ agrees" in verdict.evidence


def test_cross_depth_verdict_pairs_simple_d_with_resnet_about_2d():
    # simple nets are 3x heavier-tailed at equal depth, but both grow 4x per 6 layers: at equal
    # depth the finding holds, against a ResNet about twice as deep it is reversed
    rows = paired_rows(lambda d: 3.0, depths=(8, 14, 20, 26, 32))
    for r in rows:
        for stat in ("hutch_kurtosis", "hutch_skewness", "slq_kurtosis", "slq_skewness"):
            r[stat] *= 4.0 ** ((r["depth"] - 8) / 6)
    assert findings.residual_verdict(rows, 10).verdict == findings.HOLDS
    cross = findings.cross_depth_verdict(rows, 10)
    assert cross.verdict == findings.REVERSED
    # 2d-2 and 2d+4: simple-8/ResNet-14, simple-8/ResNet-20, simple-14/ResNet-26 (ResNet-32 is 2*14+4)
    assert "simple-8/ResNet-14, simple-8/ResNet-20, simple-14/ResNet-26, simple-14/ResNet-32" in cross.evidence
    assert "n=16 pairs" in cross.evidence


@pytest.mark.parametrize(
    "growth, expected", [(1.0, findings.HOLDS), (4.0, findings.REVERSED), (3.0 ** (1 / 1.5), findings.UNRESOLVED)]
)
def test_cross_depth_verdict_holds_reverses_or_stays_open(growth, expected):
    # simple = 3x ResNet at equal depth; both grow by `growth` per 6 layers, so against a ResNet
    # about twice as deep the simple net is heavier (no growth), lighter (fast growth), or
    # heavier against ResNet-(2d-2) and lighter against ResNet-(2d+4) (in between: not resolved)
    rows = paired_rows(lambda d: 3.0, depths=(8, 14, 20, 26, 32))
    for r in rows:
        for stat in ("hutch_kurtosis", "hutch_skewness", "slq_kurtosis", "slq_skewness"):
            r[stat] *= growth ** ((r["depth"] - 8) / 6)
    assert findings.cross_depth_verdict(rows, 10).verdict == expected


def test_estimators_that_disagree_are_reported():
    verdict = findings.residual_verdict(paired_rows(lambda d: 3.0, slq_ratio=lambda d: 1 / 3), 10)
    assert verdict.verdict == findings.HOLDS and "SLQ **disagrees: reversed**" in verdict.evidence


def test_paired_comparison_is_the_t_test_on_its_scale_with_power():
    rng = np.random.default_rng(3)
    a, b = np.exp(rng.normal(1.0, 0.5, 9)), np.exp(rng.normal(0.0, 0.5, 9))
    c = paired_comparison(a, b, "log")
    d = np.log(a) - np.log(b)
    assert c.p == pytest.approx(sps.ttest_rel(np.log(a), np.log(b)).pvalue)
    assert (c.lo, c.hi) == pytest.approx(sps.t.interval(0.95, 8, loc=d.mean(), scale=sps.sem(d)))
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert c.pairs_for_power == math.ceil((z * d.std(ddof=1) / abs(d.mean())) ** 2)
    assert "ratio" in str(c) and paired_comparison([2.0], [1.0]).direction == 0  # one pair never decides
    # skewness of either sign: asinh differences, close to log-ratios where both are large and positive
    skew = paired_comparison([40.0, -60.0, 55.0], [20.0, -80.0, 30.0], "asinh")
    assert skew.n == 3 and skew.mean == pytest.approx(np.mean(np.arcsinh([40, -60, 55]) - np.arcsinh([20, -80, 30])))
    assert paired_comparison([40.0], [20.0], "asinh").mean == pytest.approx(np.log(2), rel=1e-3)


def test_log_scale_intervals_cover_and_stay_positive():
    """Three seeds of a heavy-tailed kurtosis (log-normal seed spread, probe noise on top): the
    log-scale interval covers the geometric mean at its nominal rate and never crosses zero,
    where the arithmetic t-interval of the same values crosses it in a good share of cases;
    the asinh scale does the same for a skewness far from zero, of either sign."""
    rng = np.random.default_rng(7)
    truth, covered, negative_t = 50.0, 0, 0
    reps = 2000
    for _ in range(reps):
        values = truth * np.exp(rng.normal(0, 1.2, 3) + rng.normal(0, 0.3, 3))
        value, lo, hi = seed_average(values, 0.95, "log")
        assert 0 < lo <= value <= hi
        covered += lo <= truth <= hi
        negative_t += seed_average(values, 0.95, "linear")[1] < 0
        skew_lo, skew_hi = seed_average(-values, 0.95, "asinh")[1:]
        assert skew_lo <= skew_hi and (skew_hi < 0 or lo < 1)  # crosses zero only with a value near it
    assert 0.93 <= covered / reps <= 0.97
    assert negative_t / reps > 0.3
    assert seed_average([3.0, -1.0, 2.0], 0.95, "log") == seed_average([3.0, -1.0, 2.0], 0.95, "asinh")


def test_replication_section_sets_verdicts_side_by_side():
    same = document.replication_section(paired_rows(lambda d: 3.0), {"half 1": paired_rows(lambda d: 3.0, seed=1)})
    assert "4 of 4 verdicts agree" in "\n".join(same)
    other = document.replication_section(paired_rows(lambda d: 3.0), {"half 1": paired_rows(lambda d: 1 / 3)})
    assert "| 3 | 10 | **holds / P/kurtosis: holds** | **reversed / P/kurtosis: reversed** | **no** |" in other


def test_results_document_from_tables(tmp_path):
    files = make_runs(
        tmp_path,
        [
            (a, d, 0, t, loss, False)
            for a, d, t, loss in [
                ("resnet", 8, 2.0, 0.5),
                ("simple", 8, 4.0, 0.6),
                ("resnet", 14, 2.0, 0.5),
                ("simple", 14, 8.0, 0.9),
            ]
        ],
    )
    summary = summarize(**files, density=DENSITY, stats=STATS)
    by_model = aggregate_by_model(summary.rows, 0.95)
    text = document.render_results(
        summary.rows,
        by_model,
        figures=["fig3_moments.png"],
        config={"dataset": "synthetic"},
        machine="test box",
        wall_time=None,
        sources=["summary.csv", "summary_by_model.csv"],
    )
    assert "Synthetic data" in text and "test box" in text and "not recorded" in text
    assert "![fig3_moments](fig3_moments.png)" in text
    # two depths, one seed: no rank correlation decides, and two pairs give an interval too wide
    assert text.count("**not resolved at this scale**") == 4 + 3  # findings 2-4 on P / kurtosis too
    assert "Kurtosis is not excess" in text and BY_MODEL_RULE in text
    assert "| 14 |" in text and "ResNet-14" in text and findings.RULES in text


# --- the curvature table: blocks of the Hessian and its Gauss-Newton part ----------------------
BLOCK_TAILS = {"input": 1.0, "stage1": 2.0, "stage2": 3.0, "stage3": 6.0, "classifier": 0.5}


def curvature_files(tmp_path, runs, n=120):
    """blocks.h5 and gauss_newton.h5 for runs = [(arch, depth, seed, scale, diverged)]: block b has
    tail BLOCK_TAILS[b] x scale, H tail 4 x scale and G tail 8 x scale."""
    blocks, gauss_newton = [], []
    for arch, depth, seed, scale, diverged in runs:
        ident = fr.identity(arch, depth, seed)
        d = tmp_path / f"{arch}{depth}_s{seed}"
        d.mkdir()
        fr.write_parts(
            d / "blocks.h5",
            ident,
            {b: fr.spectrum(n, t * scale, i) for i, (b, t) in enumerate(BLOCK_TAILS.items())},
            diverged=diverged,
        )
        fr.write_parts(
            d / "gauss_newton.h5",
            ident,
            {"hessian": fr.spectrum(n, 4 * scale, 7), "gauss_newton": np.abs(fr.spectrum(n, 8 * scale, 8))},
            diverged=diverged,
        )
        blocks.append(str(d / "blocks.h5"))
        gauss_newton.append(str(d / "gauss_newton.h5"))
    return blocks, gauss_newton


def test_curvature_table_recovers_each_parts_moments(tmp_path):
    blocks, gauss_newton = curvature_files(tmp_path, [("resnet", 8, 0, 1.0, False), ("simple", 8, 0, 3.0, True)])
    rows = summarize_curvature(blocks, gauss_newton, stats=STATS)
    assert [list(r) for r in rows] == [list(CURVATURE_COLUMNS)] * 2
    ok, diverged = rows
    for i, (block, tail) in enumerate(BLOCK_TAILS.items()):
        truth = fr.true_stats(fr.spectrum(120, tail, i))
        for stat in ("skewness", "kurtosis"):
            assert ok[f"block_{block}_{stat}"] == pytest.approx(truth[stat], rel=1e-9)
            assert ok[f"block_{block}_{stat}_lo"] <= ok[f"block_{block}_{stat}"] <= ok[f"block_{block}_{stat}_hi"]
    assert ok["gauss_newton_kurtosis"] == pytest.approx(fr.true_stats(np.abs(fr.spectrum(120, 8, 8)))["kurtosis"])
    assert ok["hessian_kurtosis"] == pytest.approx(fr.true_stats(fr.spectrum(120, 4, 7))["kurtosis"])
    assert not ok["diverged"] and diverged["diverged"]
    assert all(math.isnan(diverged[c]) for c in CURVATURE_STAT_COLUMNS)
    only_blocks = summarize_curvature(blocks, stats=STATS)  # the Gauss-Newton stage off: its columns NaN
    assert only_blocks[0]["block_stage3_kurtosis"] == ok["block_stage3_kurtosis"]
    assert all(math.isnan(only_blocks[0][c]) for c in GN_COLUMNS)
    with pytest.raises(OutputError, match="not the same run"):
        summarize_curvature(blocks, gauss_newton[::-1], stats=STATS)
    with pytest.raises(ValueError, match="equally many"):
        summarize_curvature(blocks, gauss_newton[:1], stats=STATS)


def test_curvature_table_per_model_and_csv(tmp_path):
    blocks, gauss_newton = curvature_files(tmp_path, [("simple", 8, s, 1.0 + s, False) for s in range(2)])
    rows = summarize_curvature(blocks, gauss_newton, stats=STATS)
    (agg,) = aggregate_curvature(rows, 0.95)
    assert list(agg) == list(CURVATURE_BY_MODEL_COLUMNS) and agg["interval"] == "seeds"
    kurtosis = [r["block_stage3_kurtosis"] for r in rows]
    assert agg["block_stage3_kurtosis"] == pytest.approx(np.sqrt(kurtosis[0] * kurtosis[1]))  # geometric mean
    write_csv(tmp_path / "c.csv", rows, CURVATURE_COLUMNS)
    assert read_csv(tmp_path / "c.csv") == rows


def curvature_rows(g_ratio, h_ratio, seeds=range(4), depths=(8, 14, 20), noise=0.1, seed=0):
    """Per-run curvature rows where simple / ResNet kurtosis of G is ``g_ratio``, of H ``h_ratio``
    (log-normal noise), and stage 3 has the largest block kurtosis."""
    rng = np.random.default_rng(seed)
    rows = []
    for depth in depths:
        for s in seeds:
            for arch in ("resnet", "simple"):
                row = dict.fromkeys(CURVATURE_COLUMNS, np.nan)
                row.update(arch=arch, depth=depth, seed=s, step=10, model=f"{arch}{depth}", diverged=False)
                for block, tail in BLOCK_TAILS.items():
                    row[f"block_{block}_kurtosis"] = 3 + tail * np.exp(noise * rng.normal())
                for part, ratio in (("gauss_newton", g_ratio), ("hessian", h_ratio)):
                    row[f"{part}_kurtosis"] = 20 * (ratio if arch == "simple" else 1) * np.exp(noise * rng.normal())
                rows.append(row)
    return rows


@pytest.mark.parametrize(
    "g_ratio, h_ratio, expected",
    [
        (4.0, 2.0, "yes, G more than H"),
        (2.0, 4.0, "yes, G less than H"),
        (1 / 3, 2.0, "no (reversed)"),
        (1.0, 2.0, findings.UNRESOLVED),
    ],
)
def test_gauss_newton_answer_from_paired_ratios(g_ratio, h_ratio, expected):
    answer, evidence = findings.gauss_newton_answer(curvature_rows(g_ratio, h_ratio), 10)
    assert answer == expected
    g, h = (float(x) for x in re.findall(r"of [GH]: ratio ([\d.]+)", evidence))
    assert (g, h) == pytest.approx((g_ratio, h_ratio), rel=0.2) and evidence.count("n=12 pairs") == 3


def test_heaviest_block_and_part_ratios():
    rows = curvature_rows(4.0, 2.0)
    assert {findings.heaviest_block(r) for r in rows} == {"stage3"}
    assert findings.heaviest_block({**rows[0], "diverged": True}) is None
    ratios = findings.part_ratios(rows, 10)
    assert list(ratios) == [f"block_{b}" for b in BLOCK_TAILS] + ["hessian", "gauss_newton"]
    assert math.exp(ratios["gauss_newton"].mean) == pytest.approx(4.0, rel=0.1)
    assert ratios["block_stage3"].direction == 0  # the blocks do not differ by architecture here


def test_results_document_with_and_without_the_curvature_section(tmp_path):
    files = make_runs(tmp_path, [(a, 8, 0, 2.0, 0.5, False) for a in ("resnet", "simple")])
    summary = summarize(**files, density=DENSITY, stats=STATS)
    rows = curvature_rows(4.0, 2.0)
    common = dict(figures=[], config={}, machine="m", wall_time=None, sources=["summary.csv"])
    by_model = aggregate_by_model(summary.rows, 0.95)
    plain = document.render_results(summary.rows, by_model, **common)
    assert "Where the outliers live" not in plain
    text = document.render_results(summary.rows, by_model, **common, curvature=(rows, aggregate_curvature(rows, 0.95)))
    assert text.startswith(plain[: plain.index("## Training loss")])  # the rest of the document is unchanged
    assert findings.CURVATURE_RULES in text and "### Step 10: kurtosis of each block" in text
    assert "| simple-20 |" in text and text.count("| stage3 |\n") == 6  # heaviest block of every model
    assert "ResNets: stage3 in 3 of 3 models; simple nets: stage3 in 3 of 3 models" in text
    assert "**Is it the Gauss-Newton part that skip connections damp?** **yes, G more than H**" in text
    assert "| G (Gauss-Newton) | ratio 3.7 [3.29, 4.16]" in text
