"""Fault injection through the real snakemake CLI: a misplaced or damaged intermediate is an error
that names the file, never a finished run with different numbers."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import pytest

import hessdepth as hd

from conftest import LOCAL_ENV, ROOT, copy_of, snakemake
from hessdepth.h5io import DIGEST, OutputError, atomic_h5, check_identity
from hessdepth.summary import summarize
from hessdepth.data import synthetic_dataset
from test_data import tampered
from test_summary import DENSITY, STATS, make_runs

pytestmark = pytest.mark.workflow


def test_identity_is_checked_against_what_the_path_stands_for(tmp_path):
    files = make_runs(tmp_path, [("resnet", 8, 0, 2.0, 0.5, False), ("simple", 8, 0, 4.0, 0.6, False)])
    expect = [{"model": "resnet8", "seed": 0, "step": 10}, {"model": "simple8", "seed": 0, "step": 10}]
    assert len(summarize(**files, density=DENSITY, stats=STATS, expect=expect).rows) == 2
    swapped = {k: v[::-1] for k, v in files.items()}  # every file in the other run's place
    with pytest.raises(OutputError, match=r"holds \{'model': 'simple8'\} but stands for \{'model': 'resnet8'\}"):
        summarize(**swapped, density=DENSITY, stats=STATS, expect=expect)
    with pytest.raises(OutputError, match="seed"):
        check_identity("x.h5", {"model": "resnet8", "seed": 1}, {"model": "resnet8", "seed": 0})


def test_a_checkpoint_copied_into_another_models_folder_is_refused(finished_run, tmp_path):
    workdir = copy_of(finished_run, tmp_path)
    train = workdir / "results/test/train"
    shutil.copyfile(train / "resnet8/seed0/step10.h5", train / "simple8/seed0/step10.h5")
    summary = (workdir / "results/test/summary.csv").read_text()
    proc = snakemake(workdir, "results/test/summary.csv", check=False)
    assert proc.returncode != 0
    assert "holds {'model': 'resnet8'} but stands for {'model': 'simple8'}" in proc.stdout + proc.stderr + "".join(
        p.read_text() for p in (workdir / "logs").rglob("*.log")
    )
    assert (workdir / "results/test/summary.csv").read_text() == summary  # nothing already computed is lost


def test_a_flipped_byte_in_a_spectrum_is_refused_by_the_summary(finished_run, tmp_path):
    workdir = copy_of(finished_run, tmp_path)
    lanczos = workdir / "results/test/hessian/simple14/seed0/step20/lanczos.h5"
    with h5py.File(lanczos, "r+") as f:
        f["weights"][0, 0] = f["weights"][0, 0] * (1 + 1e-9)  # a tiny edit, checksums recomputed by HDF5
    (workdir / "results/test/summary.csv").unlink()
    proc = snakemake(workdir, "results/test/summary.csv", check=False)
    log = (workdir / "logs/test/summary.log").read_text()
    assert proc.returncode != 0 and f"{lanczos.relative_to(workdir)}: damaged" in log
    assert not (workdir / "results/test/summary.csv").exists()
    assert "--configfile" in log  # the rebuild hint names the config that made the file


def test_the_rebuild_hint_rebuilds_the_file(finished_run, tmp_path):
    """Following the hint word for word (from the run's folder) rebuilds the damaged file."""
    workdir = copy_of(finished_run, tmp_path)
    checkpoint = workdir / "results/test/train/simple8/seed0/step10.h5"
    with h5py.File(checkpoint, "r+") as f:
        f.attrs["train_loss"] = 0.0
    proc = snakemake(
        workdir, "results/test/hessian/simple8/seed0/step10/lanczos.h5", "--forcerun", "lanczos", check=False
    )
    log = "".join(p.read_text() for p in (workdir / "logs").rglob("*.log"))
    hint = re.search(r"rebuild it with: (rm -f \S+ && snakemake [^\n;]+)", log)
    assert proc.returncode != 0 and hint, log[-2000:]
    assert "--configfile" in hint.group(1)
    command = hint.group(1).replace(
        " snakemake ", f" {sys.executable} -m snakemake --snakefile {ROOT / 'Snakefile'} ", 1
    )
    subprocess.run(command, shell=True, cwd=workdir, check=True, capture_output=True, env=LOCAL_ENV)
    proc = snakemake(workdir, "results/test/hessian/simple8/seed0/step10/lanczos.h5", "--forcerun", "lanczos")


def test_the_summary_refuses_rows_made_with_other_settings(finished_run, tmp_path):
    """With --rerun-triggers mtime a changed setting reruns only what is missing: the summary
    must not mix the new file with the others."""
    workdir = copy_of(finished_run, tmp_path)
    lanczos = workdir / "results/test/hessian/resnet8/seed0/step10/lanczos.h5"
    lanczos.unlink()
    (workdir / "results/test/summary.csv").unlink()
    proc = snakemake(
        workdir,
        "results/test/summary.csv",
        "--rerun-triggers",
        "mtime",
        check=False,
        overrides={"lanczos": {"iterations": 9}},
    )
    log = (workdir / "logs/test/summary.log").read_text()
    assert proc.returncode != 0
    assert "was made with other settings: iterations=8 (the config says 9)" in log
    assert "--configfile" in log


def test_a_result_from_a_retrained_checkpoint_is_refused(finished_run, tmp_path):
    """A checkpoint replaced by another valid one (other weights, same run) that keeps the old time
    stamp (copied in with cp -p, say), so snakemake sees nothing to redo: the summary names the
    spectrum and the checkpoint."""
    workdir = copy_of(finished_run, tmp_path)
    checkpoint = workdir / "results/test/train/simple8/seed0/step10.h5"
    stamp = checkpoint.stat()
    with h5py.File(checkpoint) as f:
        attrs = {k: v for k, v in f.attrs.items() if k != DIGEST}
        state = {k: f["state"][k][()] for k in f["state"]}
    with atomic_h5(checkpoint, attrs) as f:
        for name, value in state.items():
            f[f"state/{name}"] = value * 1.01 if value.dtype.kind == "f" else value
    os.utime(checkpoint, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    (workdir / "results/test/summary.csv").unlink()
    proc = snakemake(workdir, "results/test/summary.csv", check=False)
    log = (workdir / "logs/test/summary.log").read_text()
    assert proc.returncode != 0
    assert (
        "simple8/seed0/step10/lanczos.h5 was computed from another version of "
        "results/test/train/simple8/seed0/step10.h5" in log
    )


def test_presets_write_under_their_own_names(tmp_path):
    for configfile, run in (("config/test.yaml", "test"), ("config/demo.yaml", "demo")):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--dry-run",
                "--snakefile",
                str(ROOT / "Snakefile"),
                "--directory",
                str(tmp_path),
                "--configfile",
                str(ROOT / configfile),
                "--cores",
                "1",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=LOCAL_ENV,
        )
        outputs = re.findall(r"output: (\S+?),?\n", proc.stdout)
        assert outputs and all(
            o.split("/")[:2] in (["results", run], ["figures", run])
            for o in outputs
            if not o.startswith("results/downloads")
        ), outputs[:5]


def test_after_a_kill_unlock_then_rerun_incomplete_resumes_training(tmp_path):
    """README, Reliability: the whole snakemake process killed mid-training; the next run is told
    to unlock, and --unlock then --rerun-incomplete resumes training from its last snapshot."""
    target = "results/test/train/resnet8/seed0/curve.h5"
    overrides = {"train": {"steps": 300, "snapshot_every": 10, "log_every": 100}}
    snakemake(tmp_path, "results/test/data.h5", overrides=overrides)
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        target,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(ROOT / "config/test.yaml"),
        str(tmp_path / "overrides.yaml"),
        "--cores",
        "1",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=LOCAL_ENV
    )
    snapshot = tmp_path / "results/test/train/resnet8/seed0/snapshot.pt"
    deadline = time.monotonic() + 300
    while not snapshot.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert snapshot.exists()

    again = snakemake(tmp_path, target, overrides=overrides, check=False)
    assert again.returncode != 0 and "--rerun-incomplete" in again.stdout + again.stderr
    locked = snakemake(tmp_path, target, "--rerun-incomplete", overrides=overrides, check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    snakemake(tmp_path, target, "--unlock", overrides=overrides)
    snakemake(tmp_path, target, "--rerun-incomplete", overrides=overrides)
    log = (tmp_path / "logs/test/train/resnet8_seed0.log").read_text()
    assert "resuming from step" in log
    assert not snapshot.exists()  # a finished run removes its snapshot


def test_a_malformed_cifar_batch_stops_the_run_naming_archive_and_batch(tmp_path):
    """Class 2 through the CLI: labels of one batch that do not match its rows."""
    small = synthetic_dataset(50, 20, seed=3)

    def fewer_labels(batch):
        return {**batch, "labels": batch["labels"][:-1]}

    archive = tampered(tmp_path, small, data_batch_2=fewer_labels)
    overrides = {"dataset": "cifar10", "data": {"archive": str(archive), "md5": None}}
    proc = snakemake(tmp_path / "run", "results/test/data.h5", overrides=overrides, check=False)
    log = (tmp_path / "run/logs/test/prepare_data.log").read_text()
    assert proc.returncode != 0
    assert "tampered.tar.gz: cifar-10-batches-py/data_batch_2" in log and "DataError" in log
    assert not (tmp_path / "run/results/test/data.h5").exists()


def test_a_float_where_an_integer_belongs_fails_before_any_job(tmp_path):
    """Class 5 through the CLI: the config is checked, types strictly, before anything runs."""
    proc = snakemake(tmp_path, "--config", "train={steps: 20.0}", check=False)
    assert proc.returncode != 0
    assert "train.steps" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_impossible_settings_are_refused_before_any_job(tmp_path):
    """Round 3, classes 3 and 5 through the CLI: every problem in one message, nothing run."""
    overrides = {
        "dataset": "cifar10",
        "data": {"archive": str(tmp_path / "no-such.tar.gz"), "md5": None},
        "train": {"steps": 10**12, "warmup_steps": 2 * 10**12, "lr_milestones": [0.75, 0.5], "log_every": 2 * 10**12},
        "lanczos": {"iterations": 10**9},
        "density": {"sigma2": 1e300},
        "figures": {"curves": [8, 8]},
    }
    proc = snakemake(tmp_path / "run", overrides=overrides, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and not (tmp_path / "run/results").exists()
    for expected in (
        "train.warmup_steps: 2000000000000 is not shorter than the training",
        "train.lr_milestones: [0.75, 0.5] must increase",
        "train.log_every: 2000000000000 is more than train.steps",
        "figures.curves: [8, 8] asks for the same value twice",
        "train.steps: 1000000000000 steps of",
        "lanczos.iterations: 1000000000 is more than the 5,006 parameters of the depth-8 nets",
        "density.sigma2: 1e+300 makes the kernel",
        "data.archive: there is no file",
    ):
        assert expected in out, expected
    depth = snakemake(tmp_path / "deep", overrides={"models": {"depths": [8, 14, 6000000002]}}, check=False)
    assert depth.returncode != 0 and not (tmp_path / "deep/results").exists()
    assert re.search(r"models\.depths: depth 6000000002 needs at least [\d,.]+ TiB of activations", depth.stderr)


def test_more_threads_than_cores_are_clamped_with_a_warning(tmp_path):
    import torch

    from hessdepth.workflow import setup_job

    before, cores = torch.get_num_threads(), len(os.sched_getaffinity(0))
    try:
        setup_job(tmp_path / "job.log", threads=10**6)
        assert torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)
        sys.stderr = sys.__stderr__
    assert (
        f"threads: 1000000 asked for, but this job may use {cores} cores: using {cores}"
        in (tmp_path / "job.log").read_text()
    )


def test_the_rebuild_hint_keeps_the_config_overrides(finished_run, tmp_path):
    """A hint from a run with --config carries it: followed word for word, the file is rebuilt
    with the overridden setting, not the config file's."""
    workdir = copy_of(finished_run, tmp_path)
    lanczos = workdir / "results/test/hessian/resnet8/seed0/step10/lanczos.h5"
    lanczos.unlink()
    (workdir / "results/test/summary.csv").unlink()
    summary = "results/test/summary.csv"
    proc = snakemake(workdir, summary, "--rerun-triggers", "mtime", "--config", "lanczos={iterations: 9}", check=False)
    log = (workdir / "logs/test/summary.log").read_text()
    hint = re.search(r"rebuild it with: (rm -f \S+ && snakemake [^\n;]+)", log)
    assert proc.returncode != 0 and hint, log[-2000:]
    stale = hint.group(1).split()[2]  # a file made with 8 iterations, which the summary refused
    assert "--config 'lanczos={iterations: 9}'" in hint.group(1)
    command = hint.group(1).replace(
        " snakemake ", f" {sys.executable} -m snakemake --snakefile {ROOT / 'Snakefile'} ", 1
    )
    subprocess.run(command, shell=True, cwd=workdir, check=True, capture_output=True, env=LOCAL_ENV)
    with h5py.File(workdir / stale) as f:
        assert f.attrs["iterations"] == 9


def all_logs(workdir, proc) -> str:
    return proc.stdout + proc.stderr + "".join(p.read_text() for p in (workdir / "logs").rglob("*.log"))


@pytest.mark.parametrize(
    "figure, kind, moved, place",
    [
        ("fig5_curves", "curve", "train/resnet8/seed0/curve.h5", "train/simple8/seed0/curve.h5"),
        (
            "fig1_gradnorms",
            "gradient norms",
            "gradnorms/resnet14/seed0/step10.h5",
            "gradnorms/simple14/seed0/step10.h5",
        ),
    ],
)
def test_a_file_of_another_model_is_not_drawn_as_that_model(finished_run, tmp_path, figure, kind, moved, place):
    """Another model's curve or gradient norms put in a model's place (a newer time stamp, so the
    figure is redrawn): the figure job names the file and the model it holds, and draws nothing."""
    workdir = copy_of(finished_run, tmp_path)
    results = workdir / "results/test"
    shutil.copyfile(results / moved, results / place)
    png = workdir / f"figures/test/{figure}.png"
    proc = snakemake(workdir, f"figures/test/{figure}.png", check=False)
    stands_for = place.split("/")[1]
    assert proc.returncode != 0, kind
    assert f"holds {{'model': '{moved.split('/')[1]}'}} but stands for {{'model': '{stands_for}'}}" in all_logs(
        workdir, proc
    )
    assert not png.exists()  # snakemake removes a failed job's outputs: no figure of the wrong model


def test_a_dataset_made_from_other_data_settings_is_refused_before_training(finished_run, tmp_path):
    """A data.h5 of another synthetic seed put in the run's place: every training job stops before
    its first step, naming the file, what it holds and what the config asks for."""
    workdir = copy_of(finished_run, tmp_path)
    other = {"dataset": "synthetic", "half": None, "synthetic": {"n_train": 200, "n_test": 100, "seed": 1}}
    attrs = {"dataset": "synthetic", "source": "synthetic (seed 1)", "md5": "", "synthetic": True, "settings": other}
    hd.write_dataset_h5(workdir / "results/test/data.h5", synthetic_dataset(200, 100, seed=1), attrs)
    summary = (workdir / "results/test/summary.csv").read_text()
    proc = snakemake(workdir, "results/test/summary.csv", check=False)
    assert proc.returncode != 0
    assert (
        "results/test/data.h5 was made from other data: it holds {'synthetic': {'n_test': 100, 'n_train': 200, "
        "'seed': 1}}, the config asks for {'synthetic': {'n_test': 100, 'n_train': 200, 'seed': 0}}"
        in all_logs(workdir, proc).replace('"', "'")
    )
    assert (workdir / "results/test/summary.csv").read_text() == summary
    # Snakemake removes a training job's old outputs before rerunning it (its input changed), and
    # starts no further job after the first refusal, so which old checkpoints remain depends on the
    # job order; what must hold is that none of the wrong data takes their place
    for checkpoint in (workdir / "results/test/train").rglob("step*.h5"):
        old = finished_run / checkpoint.relative_to(workdir)
        assert checkpoint.read_bytes() == old.read_bytes(), checkpoint


@pytest.fixture
def mount(tmp_path):
    """``mount(options, target, source=None)`` mounts with the real mount(8) (root only); unmounted after the test."""
    targets = []

    def do(options, target, source="tmpfs"):
        args = ["mount", *(["-t", "tmpfs"] if source == "tmpfs" else ["--bind"]), "-o", options, source, target]
        if os.geteuid() != 0 or subprocess.run(args, capture_output=True).returncode != 0:
            pytest.skip("needs root and mount(8) to make a full or read-only folder")
        targets.append(target)
        if source != "tmpfs" and "ro" in options.split(","):  # a bind mount takes ro on a remount
            subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)

    yield do
    for target in reversed(targets):
        subprocess.run(["umount", "-l", target], check=False)


def test_a_full_disk_is_a_clear_error_that_leaves_nothing_partial(finished_run, tmp_path, mount):
    workdir = copy_of(finished_run, tmp_path)
    folder = workdir / "results/test/gradnorms/simple14/seed0"
    (folder / "step10.h5").unlink()
    mount("size=64k", folder)
    filler = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError, match="No space left"):  # fill the disk to the last byte
        while True:
            os.write(filler, b"\0" * 4096)
    os.close(filler)
    proc = snakemake(workdir, "results/test/gradnorms/simple14/seed0/step10.h5", check=False)
    log = all_logs(workdir, proc)
    assert proc.returncode != 0
    assert "cannot write results/test/gradnorms/simple14/seed0/step10.h5: no space left on the device" in log, log[
        -3000:
    ]
    assert "nothing partial was left" in log
    assert sorted(p.name for p in folder.iterdir()) == ["filler"]


def test_a_read_only_results_folder_stops_the_run_before_any_job(finished_run, tmp_path, mount):
    workdir = copy_of(finished_run, tmp_path)
    results = workdir / "results/test"
    summary = results / "summary.csv"
    before = summary.read_text()
    os.utime(results / "train/simple8/seed0/step10.h5")  # something to redo
    mount("ro", results, source=results)
    proc = snakemake(workdir, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cannot write results/test: its folder is on a read-only file system" in out, out[-3000:]
    assert "Job stats" not in out  # stopped before any job was planned
    assert summary.read_text() == before
