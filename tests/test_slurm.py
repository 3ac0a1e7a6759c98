"""`snakemake --profile slurm` on a real single-node SLURM cluster, started for these tests.

tests/cluster/start_slurm.sh starts the cluster (as root; it installs slurm-wlm and munge when
missing) and tests/cluster/stop_slurm.sh stops it at the end of the session, whatever happened.
The profile tests/cluster/profile is layered over slurm/ with the few overrides the test
cluster needs (squeue as status command, early status checks, kept SLURM logs, small memory).
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests/cluster"
R = "results/test"
# Every compute rule at least once, and a local rule (the figure): figure 1 of config/test.yaml
# (both archs' gradient norms at depth 14, step 10) and every Hessian file of one of its
# checkpoints. The whole DAG runs with the local executor (tests/conftest.py's finished_run);
# here each kind of job runs once on the cluster.
MODEL, STEP, FIGURE = "resnet14", 10, "fig1_gradnorms"
HESSIAN_FILES = ("lanczos", "moments", "blocks", "gauss_newton")
TARGETS = [
    *(f"{R}/hessian/{MODEL}/seed0/step{STEP}/{name}.h5" for name in HESSIAN_FILES),
    f"figures/test/{FIGURE}.pdf",
]
COMPUTE_JOBS = {
    "prepare_data": 1,
    "train": 2,
    "gradnorms": 2,
    "lanczos": 1,
    "moments": 1,
    "block_moments": 1,
    "gauss_newton": 1,
}
# The resume test trains one model longer than config/test.yaml does, with frequent snapshots.
RESUME_STEPS, SNAPSHOT_EVERY = 400, 50


def run_script(name: str) -> None:
    proc = subprocess.run([str(CLUSTER / name)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"tests/cluster/{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root")
    try:
        run_script("start_slurm.sh")
        yield
    finally:
        run_script("stop_slurm.sh")


def snakemake_command(*args: str, configfiles: tuple[Path, ...] = ()) -> list[str]:
    """``snakemake ARGS --profile slurm --profile tests/cluster/profile`` on config/test.yaml + configfiles."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        *args,
        "--profile",
        str(ROOT / "slurm"),
        "--profile",
        str(CLUSTER / "profile"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--configfile",
        str(ROOT / "config/test.yaml"),
        *map(str, configfiles),
    ]


def start_snakemake(workdir: Path, *args: str, configfiles: tuple[Path, ...] = ()) -> subprocess.Popen:
    """Snakemake in the background in ``workdir``, its output in ``workdir/snakemake.out``."""
    with open(workdir / "snakemake.out", "w") as out:
        return subprocess.Popen(
            snakemake_command(*args, configfiles=configfiles),
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )


def finish(proc: subprocess.Popen, workdir: Path, timeout: float) -> None:
    """Wait for snakemake; stop it (it cancels its SLURM jobs) if it overruns; fail unless it succeeded."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=60)
    output = (workdir / "snakemake.out").read_text()
    assert proc.returncode == 0, f"snakemake failed ({proc.returncode}):\n{output[-8000:]}"


def slurm_job_ids(workdir: Path, rule: str) -> set[int]:
    """The SLURM job ids of a rule's jobs, from their SLURM log files (``<jobid>.log``)."""
    return {int(p.stem) for p in (workdir / f".snakemake/slurm_logs/rule_{rule}").rglob("*.log")}


def job_state(job_id: int) -> str:
    """SLURM's state of a job (squeue remembers finished jobs for MinJobAge, 300 s here)."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%T", "--jobs", str(job_id)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip()


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """TARGETS of config/test.yaml, the compute jobs as SLURM jobs."""
    workdir = tmp_path_factory.mktemp("slurm_targets")
    finish(start_snakemake(workdir, *TARGETS), workdir, timeout=900)
    return workdir


def test_every_target_is_made(slurm_run):
    for name in HESSIAN_FILES:
        with h5py.File(slurm_run / f"{R}/hessian/{MODEL}/seed0/step{STEP}/{name}.h5") as f:
            assert f.attrs["model"] == MODEL and f.attrs["step"] == STEP, name
    for arch in ("resnet", "simple"):
        with h5py.File(slurm_run / f"{R}/gradnorms/{arch}14/seed0/step{STEP}.h5") as f:
            assert (f["norms"][()] > 0).all()
        for step in (10, 20):
            with h5py.File(slurm_run / f"{R}/train/{arch}14/seed0/step{step}.h5") as f:
                assert f.attrs["model"] == f"{arch}14" and f.attrs["step"] == step
    for ext, magic in (("pdf", b"%PDF"), ("png", b"\x89PNG")):
        path = slurm_run / f"figures/test/{FIGURE}.{ext}"
        assert path.read_bytes()[:4] == magic and path.stat().st_size > 5000, path


def test_compute_jobs_ran_as_slurm_jobs(slurm_run):
    rules = {p.name.removeprefix("rule_") for p in (slurm_run / ".snakemake/slurm_logs").iterdir()}
    assert rules == set(COMPUTE_JOBS), "exactly the compute rules go to SLURM; the figure is local"
    assert (slurm_run / f"logs/test/figures/{FIGURE}.log").exists(), "the local figure job ran"
    last_ids = []
    for rule, count in COMPUTE_JOBS.items():
        job_ids = slurm_job_ids(slurm_run, rule)
        assert len(job_ids) >= count, (rule, job_ids)
        per_job = slurm_run / f"logs/test/{rule}"  # one log per job, or prepare_data's one log
        logs = sorted(per_job.glob("*.log")) if per_job.is_dir() else [slurm_run / f"logs/test/{rule}.log"]
        assert len(logs) == count, (rule, logs)
        for log in logs:
            in_log = [int(i) for i in re.findall(r"SLURM_JOB_ID=(\d+)", log.read_text())]
            assert in_log and set(in_log) <= job_ids, f"{log}: SLURM_JOB_ID {in_log}, SLURM logs {job_ids}"
            last_ids.append(in_log[-1])
    assert len(set(last_ids)) == len(last_ids), "every compute job ran in a SLURM job of its own"


def test_cancelled_training_resumes_from_snapshot(slurm_cluster, tmp_path):
    """scancel a training job after its first snapshot: Snakemake resubmits it (retries) and it resumes."""
    run = f"{R}/train/resnet8/seed0"
    overlay = tmp_path / "resume.yaml"
    overlay.write_text(
        f"train: {{steps: {RESUME_STEPS}, snapshot_every: {SNAPSHOT_EVERY}, log_every: {SNAPSHOT_EVERY}}}\n"
    )
    proc = start_snakemake(tmp_path, f"{run}/curve.h5", configfiles=(overlay,))
    try:
        deadline = time.monotonic() + 300
        while not ((tmp_path / f"{run}/snapshot.pt").exists() and slurm_job_ids(tmp_path, "train")):
            assert proc.poll() is None, "snakemake ended before the first training snapshot"
            assert time.monotonic() < deadline, "no training snapshot after 300 s"
            time.sleep(0.2)
        (cancelled,) = slurm_job_ids(tmp_path, "train")
        subprocess.run(["scancel", str(cancelled)], check=True)
    except BaseException:
        proc.terminate()  # snakemake cancels its SLURM jobs
        proc.wait(timeout=60)
        raise
    finish(proc, tmp_path, timeout=600)

    assert job_state(cancelled) == "CANCELLED", "the first training job was cancelled, not finished"
    (resubmitted,) = slurm_job_ids(tmp_path, "train") - {cancelled}
    log = (tmp_path / "logs/test/train/resnet8_seed0.log").read_text()
    assert f"SLURM_JOB_ID={resubmitted}" in log
    resumed = [int(s) for s in re.findall(r"resuming from step (\d+)", log)]
    assert len(resumed) == 1, f"one resume expected:\n{log}"
    start = resumed[0]
    assert 0 < start < RESUME_STEPS and start % SNAPSHOT_EVERY == 0
    after_resume = log[log.index("resuming from step") :]
    logged = [int(s) for s in re.findall(rf"step (\d+)/{RESUME_STEPS}", after_resume)]
    assert logged == list(range(start + SNAPSHOT_EVERY, RESUME_STEPS + 1, SNAPSHOT_EVERY)), (
        "step counter goes on from S"
    )
    with h5py.File(tmp_path / f"{run}/curve.h5") as f:
        expected = list(range(SNAPSHOT_EVERY, RESUME_STEPS + 1, SNAPSHOT_EVERY))
        assert f["train/step"][()].tolist() == expected
        assert np.isfinite(f["train/loss"][()]).all()
    for step in (10, 20):
        with h5py.File(tmp_path / f"{run}/step{step}.h5") as f:
            assert f.attrs["step"] == step
    assert not (tmp_path / f"{run}/snapshot.pt").exists(), "the snapshot is removed once training is done"
