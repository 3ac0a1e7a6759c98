"""The real snakemake CLI on config/test.yaml in temporary directories: every rule, every figure."""

import csv
import functools
import http.server
import json
import re
import threading

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, SUBSET_MD5, planned_jobs, snakemake
from hessdepth.summary import CURVATURE_BY_MODEL_COLUMNS, CURVATURE_COLUMNS, CURVATURE_STAT_COLUMNS
from hessdepth.plots import figures_drawn

pytestmark = pytest.mark.workflow
R = "results/test"
FIGURES = figures_drawn({})  # the paper's six (hessdepth.plots.FIGURES)
MODELS = ["resnet8", "resnet14", "simple8", "simple14"]


def test_data_file(finished_run):
    with h5py.File(finished_run / f"{R}/data.h5") as f:
        assert f["train/images"].shape == (200, 3, 32, 32) and f["train/images"].dtype == np.uint8
        assert f["test/labels"].shape == (100,)
        assert f.attrs["synthetic"] and f.attrs["dataset"] == "synthetic"


def test_checkpoints_and_curves(finished_run):
    for model in MODELS:
        for step in (10, 20):
            with h5py.File(finished_run / f"{R}/train/{model}/seed0/step{step}.h5") as f:
                assert f.attrs["model"] == model and f.attrs["step"] == step
                assert np.isfinite(f.attrs["train_loss"]) and not f.attrs["diverged"]
                assert all(np.isfinite(f[f"state/{k}"][()]).all() for k in f["state"])
        with h5py.File(finished_run / f"{R}/train/{model}/seed0/curve.h5") as f:
            assert list(f["train/step"][()]) == [5, 10, 15, 20]
            assert np.isfinite(f["train/loss"][()]).all()


def test_lanczos_and_moments(finished_run):
    for model in MODELS:
        for step in (10, 20):
            base = finished_run / f"{R}/hessian/{model}/seed0/step{step}"
            with h5py.File(base / "lanczos.h5") as f:
                assert f["nodes"].shape == (2, 8) and f["alpha"].shape == (2, 8)
                np.testing.assert_allclose(f["weights"][()].sum(axis=1), 1, rtol=1e-10)
                assert np.isfinite(f["nodes"][()]).all()
                assert f.attrs["bn_mode"] == "batch" and f.attrs["hessian_samples"] == 60
                assert f.attrs["dtype"] == "float32" and f.attrs["model"] == model
            with h5py.File(base / "moments.h5") as f:
                assert f["probe_values"].shape == (4, 4)
                assert np.isfinite(f["estimate"][()]).all() and (f["stderr"][()] > 0).all()
                assert f["estimate"][1] > 0 and f["estimate"][3] > 0  # tr(H^2), tr(H^4) > 0
            assert not list(base.glob(".*probes*")), "probe stores are removed once the output is written"


def test_gradnorms(finished_run):
    for arch in ("resnet", "simple"):
        with h5py.File(finished_run / f"{R}/gradnorms/{arch}14/seed0/step10.h5") as f:
            names = [n.decode() for n in f["names"][()]]
            assert names[0] == "conv1.weight" and names[-1] == "fc.bias"
            assert (f["norms"][()] > 0).all() and f["numel"][()].sum() == f.attrs["n_params"]


def test_summary(finished_run):
    rows = list(csv.DictReader(open(finished_run / f"{R}/summary.csv")))
    assert sorted((r["model"], int(r["step"])) for r in rows) == sorted((m, s) for m in MODELS for s in (10, 20))
    for row in rows:
        for key in ("lambda_min", "lambda_max", "slq_kurtosis", "hutch_kurtosis", "slq_skewness"):
            assert np.isfinite(float(row[key])), key
        assert float(row["lambda_min"]) < float(row["lambda_max"])
        assert float(row["slq_kurtosis_lo"]) <= float(row["slq_kurtosis"]) <= float(row["slq_kurtosis_hi"])


def test_figures_report_and_results(finished_run):
    for fig in FIGURES:
        for ext, magic in (("pdf", b"%PDF"), ("png", b"\x89PNG")):
            path = finished_run / f"figures/test/{fig}.{ext}"
            assert path.read_bytes()[:4] == magic and path.stat().st_size > 5000
    assert "fig3_moments.png" in (finished_run / "figures/test/results.md").read_text()
    assert (finished_run / "report.html").stat().st_size > 100_000


def test_every_rule_has_log_and_benchmark(finished_run):
    logs = {
        p.parent.name if p.parent.name not in ("test", "logs") else p.stem
        for p in (finished_run / "logs").rglob("*.log")
    }
    assert {"train", "lanczos", "moments", "gradnorms", "figures", "prepare_data", "summary"} <= logs
    assert list((finished_run / "benchmarks").rglob("*.tsv"))


def test_jobs_use_the_library_beside_the_snakefile(finished_run):
    """rules/common.smk puts lib/ on every job's PYTHONPATH (e.g. for --sdm conda, or a second checkout)."""
    assert f"hessdepth from {ROOT / 'lib/hessdepth'}," in (finished_run / "logs/test/prepare_data.log").read_text()


def test_nothing_left_to_do_after_a_finished_run(finished_run):
    assert planned_jobs(finished_run) == {}


def test_moments_setting_reruns_moments_only(finished_run):
    jobs = planned_jobs(finished_run, overrides={"moments": {"probes": 5}})
    assert set(jobs) - {"all"} == {"moments", "summary", "figure", "results_doc"}
    assert jobs["moments"] == 8 and jobs["figure"] == 3  # figures 2-4 read the summary; 1, 5-8 do not


@pytest.mark.parametrize(
    "override", [{"hessian": {"graph_cache_gb": 0}}, {"lanczos": {"lockstep": 2}}], ids=["graph_cache", "lockstep"]
)
def test_speed_only_setting_reruns_no_computation(finished_run, override):
    jobs = planned_jobs(finished_run, overrides=override)
    assert set(jobs) - {"all"} == {"results_doc"}  # the document quotes the whole config


def test_curvature_stages_at_their_steps(finished_run):
    """config/test.yaml turns both curvature stages on at step 10 only, with 3 probes."""
    for model in MODELS:
        base = finished_run / f"{R}/hessian/{model}/seed0"
        assert not (base / "step20/blocks.h5").exists() and not (base / "step20/gauss_newton.h5").exists()
        with h5py.File(base / "step10/blocks.h5") as f:
            blocks = json.loads(f.attrs["parts"])
            assert blocks == ["input", "stage1", "stage2", "stage3", "classifier"]
            assert sum(f[b].attrs["dimension"] for b in blocks) == f.attrs["n_params"]
            assert f.attrs["model"] == model and f.attrs["step"] == 10 and f.attrs["seed_probes"] == 2
            for b in blocks:
                assert f[f"{b}/probe_values"].shape == (3, 4) and (f[f"{b}/estimate"][()][1::2] > 0).all()
        with h5py.File(base / "step10/gauss_newton.h5") as f:
            assert json.loads(f.attrs["parts"]) == ["hessian", "gauss_newton"] and f.attrs["bn_mode"] == "batch"
            assert (f["gauss_newton/probe_values"][()] > 0).all()  # G is positive semi-definite
        assert not list(base.glob("step10/.*probes*"))
    rows = list(csv.DictReader(open(finished_run / f"{R}/summary_curvature.csv")))
    assert list(rows[0]) == list(CURVATURE_COLUMNS)
    assert sorted((r["model"], int(r["step"])) for r in rows) == sorted((m, 10) for m in MODELS)
    for row in rows:
        for column in CURVATURE_STAT_COLUMNS:
            value = float(row[column])
            assert np.isfinite(value) and (value >= 1 if column.endswith("kurtosis") else True), column
    by_model = list(csv.DictReader(open(finished_run / f"{R}/summary_curvature_by_model.csv")))
    assert list(by_model[0]) == list(CURVATURE_BY_MODEL_COLUMNS) and len(by_model) == 4
    for fig in ("fig7_blocks", "fig8_gauss_newton"):
        assert (finished_run / f"figures/test/{fig}.png").stat().st_size > 5000
        assert (finished_run / f"figures/test/{fig}.pdf").read_bytes()[:4] == b"%PDF"
    doc = (finished_run / "figures/test/results.md").read_text()
    assert "## Where the outliers live" in doc and "heaviest block" in doc and "fig8_gauss_newton.png" in doc
    assert "Is it the Gauss-Newton part that skip connections damp?" in doc
    logs = {p.parent.name for p in (finished_run / "logs").rglob("*.log")}
    assert {"block_moments", "gauss_newton"} <= logs


def test_curvature_setting_reruns_curvature_only(finished_run):
    jobs = planned_jobs(finished_run, overrides={"curvature": {"probes": 4}})
    assert set(jobs) - {"all"} == {"block_moments", "gauss_newton", "curvature_summary", "figure", "results_doc"}
    assert jobs["block_moments"] == jobs["gauss_newton"] == 4 and jobs["figure"] == 2
    # turning one stage off recomputes nothing: the table and the document drop its part, and
    # figure 7, drawn from that table, is redrawn
    jobs = planned_jobs(finished_run, overrides={"curvature": {"gauss_newton": False}})
    assert set(jobs) - {"all"} == {"curvature_summary", "figure", "results_doc"}
    assert jobs["figure"] == 1


def test_curvature_stages_off_leave_the_rest_of_the_dag(tmp_path):
    on = planned_jobs(tmp_path)
    off = planned_jobs(tmp_path, overrides={"curvature": {"blocks": False, "gauss_newton": False}})
    assert {k: v for k, v in on.items() if k not in ("block_moments", "gauss_newton", "curvature_summary")} == {
        **off,
        "figure": 8,
    }
    assert off["figure"] == 6 and not {"block_moments", "gauss_newton", "curvature_summary"} & set(off)
    every_step = planned_jobs(tmp_path, overrides={"curvature": {"steps": None}})
    assert every_step["block_moments"] == every_step["gauss_newton"] == 8


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_a_figure_schedules_only_its_upstream(tmp_path):
    assert planned_jobs(tmp_path, "figures/test/fig5_curves.pdf") == {"prepare_data": 1, "train": 2, "figure": 1}
    fig1 = planned_jobs(tmp_path, "figures/test/fig1_gradnorms.png")
    assert fig1 == {"prepare_data": 1, "train": 2, "gradnorms": 2, "figure": 1}


def test_figures_read_the_summary_tables_not_the_hessian_files(tmp_path):
    inputs = re.findall(r"rule figure:\n\s+input: ([^\n]*)", snakemake(tmp_path, "--dry-run").stdout)
    assert len(inputs) == 8
    for files in inputs:
        assert not re.search(r"(lanczos|moments|blocks|gauss_newton)\.h5", files), files
    assert sum("summary.h5" in f for f in inputs) == 3 and sum("curvature_by_model.csv" in f for f in inputs) == 2


def test_bad_config_fails_before_any_job(tmp_path):
    proc = snakemake(tmp_path, overrides={"models": {"depths": [8, 15]}, "hessian": {"bn_mode": "eval"}}, check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "models.depths: depth must be 6n+2" in message and "got 15" in message
    assert "hessian.bn_mode: 'eval' is not one of" in message
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


@pytest.fixture
def archive_server(subset_archive):
    """The subset archive served over HTTP on 127.0.0.1 (a stand-in for the CIFAR-10 site)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(subset_archive.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{subset_archive.name}"
    server.shutdown()


def test_download_rule_over_http(tmp_path, archive_server):
    target = "results/downloads/cifar-10-python.tar.gz"
    snakemake(tmp_path, target, overrides={"data": {"url": archive_server, "md5": SUBSET_MD5}})
    from hessdepth.cifar_archive import file_md5

    assert file_md5(tmp_path / target) == SUBSET_MD5


def test_download_rule_md5_mismatch(tmp_path, archive_server):
    target = "results/downloads/cifar-10-python.tar.gz"
    proc = snakemake(tmp_path, target, overrides={"data": {"url": archive_server, "md5": "0" * 32}}, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs/download_cifar10.log").read_text()
    assert "md5" in log and "expected " + "0" * 32 in log
    downloads = tmp_path / "results/downloads"
    assert not downloads.exists() or not list(downloads.iterdir()), "the bad download must be removed"


def test_cifar_cpu_preset_shrunk_to_seconds(tmp_path, subset_archive):
    """config/cifar_cpu.yaml as shipped, shrunk in size only, on one half of the subset, through
    the results document, which names the data by file name and checksum, not by its path."""
    preset = yaml.safe_load((ROOT / "config/cifar_cpu.yaml").read_text())
    preset["data"] = {"archive": str(subset_archive), "md5": SUBSET_MD5, "half": 1}
    assert len(preset["models"]["seeds"]) >= 3  # the preset ships at least 3 seeds (issue #20)
    preset["models"].update(depths=[8, 20], width=4, seeds=preset["models"]["seeds"][:2])  # 2 run here
    preset["train"].update(steps=6, checkpoints=[3, 6], log_every=3, snapshot_every=3, warmup_steps=2)
    preset["hessian"].update(samples=20, batch_size=10)
    preset["lanczos"].update(iterations=4)
    preset["moments"].update(probes=3)
    preset["gradnorms"].update(samples=20, batch_size=20)
    preset["curvature"] = {"blocks": False, "gauss_newton": False}  # as in config.yaml (test.yaml turns them on)
    preset["figures"] = {
        "gradnorms": {"depth": 20, "step": 3},
        "depth_densities": {"arch": "simple", "depths": [8, 20], "step": 6},
        "moments": {"step": 6},
        "densities_steps": {"depth": 20, "steps": [3, 6]},
        "curves": [8, 20],
    }
    snakemake(tmp_path, "figures/test/results.md", overrides=preset)
    with h5py.File(tmp_path / "results/test/data.h5") as f:  # the archive, read and halved
        assert f["train/images"].shape == (2500, 3, 32, 32) and f["test/images"].shape == (1000, 3, 32, 32)
        assert not f.attrs["synthetic"] and f.attrs["md5"] == SUBSET_MD5
        assert np.bincount(f["train/labels"][()]).tolist() == [250] * 10
    with h5py.File(tmp_path / f"results/test/train/resnet8/seed{preset['models']['seeds'][0]}/step3.h5") as f:
        assert f.attrs["dataset"] == "cifar10" and np.isfinite(f.attrs["train_loss"])
    preset["data"]["md5"] = SUBSET_MD5.upper()
    dry = snakemake(tmp_path, "figures/test/results.md", "--dry-run", overrides=preset)
    assert "Nothing to be done" in dry.stdout + dry.stderr  # the md5's letter case changes no result
    rows = list(csv.DictReader(open(tmp_path / "results/test/summary.csv")))
    seeds = preset["models"]["seeds"]
    assert len(rows) == 2 * 2 * len(seeds) * 2 and {int(r["seed"]) for r in rows} == set(seeds)
    doc = (tmp_path / "figures/test/results.md").read_text()
    assert "Deeper simple nets train slower" in doc and "Synthetic data" not in doc
    assert (
        f"cifar-10-python-subset.tar.gz, md5 {SUBSET_MD5}; class-balanced half 1 of the training images (2500)" in doc
    )
    assert str(subset_archive.parent) not in doc and str(tmp_path) not in doc
