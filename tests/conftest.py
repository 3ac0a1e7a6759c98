"""Shared helpers: run the real snakemake CLI on a config in a temporary working directory."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_SUBSET = (
    ROOT.parent / "shared/data/cifar10-subset/cifar-10-python-subset.tar.gz"
)  # ../shared beside the checkout
SUBSET_MD5 = "03223099d0e2676ccf4a9d282a75807c"
# The environment of every local snakemake run. Each snakemake start imports the SLURM executor
# plugin, which asks `scontrol show config` at import: where SLURM's client is installed but no
# controller answers (here once the SLURM tests have stopped their cluster) that waits 9 s. Local
# runs need no cluster, and with an empty SLURM configuration scontrol fails at once.
LOCAL_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "SLURM_CONF": os.devnull}


def snakemake(
    workdir: Path, *args: str, overrides: dict | None = None, check: bool = True, timeout: int = 900
) -> subprocess.CompletedProcess:
    """``snakemake ARGS -s ROOT/Snakefile --directory workdir --configfile config/test.yaml [overrides]``.

    Targets go first in ARGS (options such as --configfile take several values). ``overrides``
    are written to ``workdir/overrides.yaml`` and laid over the test config.
    """
    configfiles = [str(ROOT / "config/test.yaml")]
    if overrides:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        configfiles.append(str(workdir / "overrides.yaml"))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *args,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        *configfiles,
        "--cores",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=LOCAL_ENV)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str, overrides: dict | None = None) -> dict[str, int]:
    """Rule name -> job count of a dry run (``--dry-run``), parsed from its job-stats table."""
    out = snakemake(workdir, *args, "--dry-run", overrides=overrides).stdout
    jobs, in_table = {}, False
    for line in out.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and not parts:
            break
        elif in_table and len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


def pytest_collection_modifyitems(items):
    """A test that reads the finished run is a workflow test: make test runs those in one process,
    so the run is made once."""
    for item in items:
        if "finished_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.workflow)


@pytest.fixture
def subset_archive() -> Path:
    if not SHARED_SUBSET.exists():
        pytest.skip(f"the CIFAR-10 subset is not at {SHARED_SUBSET}")
    return SHARED_SUBSET


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """The whole DAG of config/test.yaml and its report, run once for every test that reads a
    finished run. Tests that change files work on a copy (``copy_of``), never on this run."""
    workdir = tmp_path_factory.mktemp("finished_run")
    snakemake(workdir)
    snakemake(workdir, "--report", "report.html")
    return workdir


def copy_of(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of a finished run, without Snakemake's own records (.snakemake), to change freely."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, ignore=shutil.ignore_patterns(".snakemake"))
    return workdir
