"""Fault injection for the Hessian jobs and the files between rules: kills, stale state, bad files."""

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import hessdepth as hd
from hessdepth import workflow as wf
from hessdepth.h5io import REBUILD_VARIABLE, OutputError, atomic_h5, open_checked

from conftest import planned_jobs, snakemake

SETTINGS = {
    "lanczos": dict(iterations=10, probes=6, probe_kind="rademacher", seed=0),
    "moments": dict(probes=10, seed=1),
    "blocks": dict(probes=3, seed=2),
    "gauss_newton": dict(probes=4, seed=1),
}
RUNNERS = {
    kind: functools.partial(wf.run_analysis, analysis)
    for kind, analysis in (
        ("lanczos", "lanczos"),
        ("moments", "moments"),
        ("blocks", "block_moments"),
        ("gauss_newton", "gauss_newton"),
    )
}
DATASETS = {  # what a resumed job must reproduce bitwise
    "lanczos": ["alpha", "beta", "nodes", "weights", "steps"],
    "moments": ["probe_values"],
    "blocks": [f"{b}/probe_values" for b in hd.resnet_blocks()],
    "gauss_newton": ["hessian/probe_values", "gauss_newton/probe_values"],
}
QUIET = wf.RunOptions(lockstep=1, progress=False)  # one SLQ probe per pass, no progress bars
COMMON = dict(samples=40, subset_seed=0, batch_size=20, bn_mode="batch", dtype="float64", device="cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny trained checkpoint and its dataset file."""
    root = tmp_path_factory.mktemp("ckpt")
    data = hd.synthetic_dataset(100, 20, seed=0)
    hd.write_dataset_h5(root / "data.h5", data, dict(dataset="synthetic", source="test", md5="", synthetic=True))
    cfg = hd.TrainConfig(steps=4, batch_size=20, log_every=2, snapshot_every=2)
    hd.train(
        hd.seeded_model("simple", 8, width=4),
        data,
        cfg,
        [4],
        {4: root / "step4.h5"},
        root / "curve.h5",
        None,
        seed=0,
        attrs={"dataset": "synthetic", "synthetic": True},
        progress=False,
    )
    return root / "step4.h5", root / "data.h5"


def run_job(kind, checkpoint, out):
    ckpt, data = checkpoint
    RUNNERS[kind](ckpt, data, out, {**COMMON, **SETTINGS[kind]}, options=QUIET)


@pytest.mark.parametrize("kind", list(RUNNERS))
def test_a_misspelt_setting_is_an_error_not_ignored(kind, checkpoint, tmp_path):
    ckpt, data = checkpoint
    with pytest.raises(ValueError, match=r"unknown settings \['sample'\]"):
        RUNNERS[kind](ckpt, data, tmp_path / "out.h5", {**COMMON, **SETTINGS[kind], "sample": 10}, options=QUIET)
    assert not list(tmp_path.iterdir())


@contextlib.contextmanager
def torch_threads(n):
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


JOB = """
import sys, hessdepth as hd
from test_reliability import run_job
run_job(sys.argv[1], (sys.argv[2], sys.argv[3]), sys.argv[4])
"""


def job_process(kind, checkpoint, out):
    """The job in a process of its own, one CPU thread (bitwise comparisons need equal threads)."""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent / "lib")]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", JOB, kind, *map(str, checkpoint), str(out)], env=env)


@pytest.mark.parametrize("kind", list(RUNNERS))
def test_killed_hessian_job_resumes_with_only_the_missing_probes(kind, checkpoint, tmp_path, caplog):
    reference = tmp_path / "reference.h5"
    assert job_process(kind, checkpoint, reference).wait() == 0

    out = tmp_path / f"{kind}.h5"
    store = tmp_path / f".{kind}.h5.probes.h5"
    proc = job_process(kind, checkpoint, out)
    deadline = time.monotonic() + 120
    while not store.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.exists(), "the job should have saved a finished probe before it was killed"
    assert not out.exists(), "a killed job must not leave its output"
    with h5py.File(store) as f:
        done = len(f["probes"])
    parts = len(DATASETS[kind]) if kind in ("blocks", "gauss_newton") else 1  # the store: a row per probe and part
    assert 1 <= done < SETTINGS[kind]["probes"] * parts

    with caplog.at_level("INFO", logger="hessdepth"), torch_threads(1):
        run_job(kind, checkpoint, out)
    assert f"resuming: {done} finished probe(s)" in caplog.text
    assert not store.exists()
    with h5py.File(out) as resumed, h5py.File(reference) as full:
        for name in DATASETS[kind]:
            np.testing.assert_array_equal(resumed[name][()], full[name][()], err_msg=name)


def test_curvature_jobs_write_each_part_and_pair_the_probes(checkpoint, tmp_path):
    for kind in ("moments", "blocks", "gauss_newton"):
        run_job(kind, checkpoint, tmp_path / f"{kind}.h5")
    with h5py.File(tmp_path / "blocks.h5") as f:
        assert json.loads(f.attrs["parts"]) == list(hd.resnet_blocks()) and f.attrs["seed_probes"] == 2
        assert sum(f[b].attrs["dimension"] for b in hd.resnet_blocks()) == f.attrs["n_params"]
        assert json.loads(f["stage3"].attrs["prefixes"]) == ["layer3."]
        assert f["stage3/probe_values"].shape == (3, 4) and (f["stage3/estimate"][1::2] > 0).all()
    with h5py.File(tmp_path / "gauss_newton.h5") as f, h5py.File(tmp_path / "moments.h5") as m:
        assert f.attrs["model"] == "simple8" and f.attrs["bn_mode"] == "batch" and f.attrs["dtype"] == "float64"
        assert f.attrs["gauss_newton_symmetry_error"] < 1e-10
        # the Hessian on the same probes as the moments job (same seed): the same numbers
        np.testing.assert_allclose(f["hessian/probe_values"][()], m["probe_values"][:4], rtol=1e-10)
        G = f["gauss_newton/probe_values"][()]
        assert (G > 0).all()  # v'Gv, |Gv|^2, ... of a positive semi-definite G
        assert not np.allclose(G, f["hessian/probe_values"][()], rtol=1e-2)  # nonlinear logits: G is not H
    assert not list(tmp_path.glob(".*probes*"))


def test_probe_store_of_other_settings_is_discarded(checkpoint, tmp_path, caplog):
    out = tmp_path / "lanczos.h5"
    stale = hd.ProbeStore(tmp_path / ".lanczos.h5.probes.h5", {"iterations": 3})
    stale.save(0, {"alpha": np.zeros(3)})
    with caplog.at_level("INFO", logger="hessdepth"):
        run_job("lanczos", checkpoint, out)
    assert "made with other settings" in caplog.text
    with h5py.File(out) as f:
        assert f["alpha"].shape == (6, 10) and np.isfinite(f["alpha"][()]).all()


def test_identical_outputs_for_identical_settings(checkpoint, tmp_path):
    for name in ("a.h5", "b.h5"):
        run_job("lanczos", checkpoint, tmp_path / name)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        np.testing.assert_array_equal(a["nodes"][()], b["nodes"][()])
        assert a.attrs["settings"] == b.attrs["settings"] and a.attrs["hessdepth_version"] == hd.__version__
        assert a.attrs["bn_mode"] == "batch" and a.attrs["seed"] == 0 and a.attrs["dtype"] == "float64"


WRITER = """
import sys, time, numpy as np
from hessdepth.h5io import atomic_h5
with atomic_h5(sys.argv[1]) as f:
    f["x"] = np.zeros(10)
    print("writing", flush=True)
    time.sleep(60)
"""


def test_killed_writer_leaves_no_file_that_looks_complete(tmp_path):
    out = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    with pytest.raises(OutputError, match="file not found; rebuild it: remove .*out.h5 and rerun what made it"):
        open_checked(out)
    killed = list(tmp_path.glob(".out.h5.tmp-*"))
    assert len(killed) == 1  # hidden, never under the final name

    # The next writer removes the dead writer's temporary file but not a live one's.
    live = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "writing"
        with atomic_h5(out) as f:
            f["x"] = np.ones(3)
        left = list(tmp_path.glob(".out.h5.tmp-*"))
        assert killed[0] not in left and len(left) == 1
    finally:
        live.kill()
        live.wait()
    with open_checked(out, ["x"]) as f:
        assert f["x"][...].tolist() == [1.0, 1.0, 1.0]


def test_readers_name_the_file_what_is_missing_and_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "lanczos.h5"
    with atomic_h5(path, {"model": "resnet8"}) as f:
        f["alpha"] = np.zeros((2, 3))
    monkeypatch.setenv(REBUILD_VARIABLE, wf.rebuild_command([]))  # as the workflow sets it
    with pytest.raises(OutputError) as err:
        open_checked(path, datasets=["alpha", "nodes"], attrs=["model", "bn_mode"])
    message = str(err.value)
    assert str(path) in message and "dataset 'nodes'" in message and "attribute 'bn_mode'" in message
    assert f"rebuild it with: rm -f {path} && snakemake {path} --cores all" in message

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(OutputError, match="not a readable HDF5 file"):
        open_checked(truncated)


@pytest.mark.workflow
def test_diverged_models_are_recorded_and_the_figures_go_on(tmp_path):
    overrides = {"train": {"lr": 1.0e6, "on_divergence": "record"}}
    snakemake(tmp_path, "results/test/summary.csv", "figures/test/fig3_moments.png", overrides=overrides)
    rows = (tmp_path / "results/test/summary.csv").read_text().splitlines()
    header = rows[0].split(",")
    diverged = [r.split(",")[header.index("diverged")] for r in rows[1:]]
    assert diverged == ["True"] * 8
    with h5py.File(tmp_path / "results/test/hessian/simple8/seed0/step10/lanczos.h5") as f:
        assert f.attrs["diverged"] and np.isnan(f["nodes"][()]).all()
    assert (tmp_path / "figures/test/fig3_moments.png").stat().st_size > 5000


@pytest.mark.workflow
def test_divergence_is_an_error_by_default_and_keeps_nothing_half_done(tmp_path):
    proc = snakemake(
        tmp_path, "results/test/train/simple8/seed0/curve.h5", overrides={"train": {"lr": 1.0e6}}, check=False
    )
    assert proc.returncode != 0
    log = (tmp_path / "logs/test/train/simple8_seed0.log").read_text()
    assert "TrainingDiverged" in log
    assert not (tmp_path / "results/test/train/simple8/seed0/curve.h5").exists()
    assert planned_jobs(tmp_path, "results/test/train/simple8/seed0/curve.h5") == {"train": 1}
