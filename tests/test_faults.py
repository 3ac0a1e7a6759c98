"""Fault injection through the real snakemake CLI: a misplaced or damaged intermediate is an error
that names the file, never a finished run with different numbers."""
import shutil

import h5py
import pytest

from conftest import snakemake
from hessdepth.h5io import OutputError, check_identity
from hessdepth.summary import summarize
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The test preset run once through the summary."""
    workdir = tmp_path_factory.mktemp("run")
    snakemake(workdir, "results/synthetic/summary.csv")
    return workdir


def copy_of(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, ignore=shutil.ignore_patterns(".snakemake"))
    return workdir


def test_a_checkpoint_copied_into_another_models_folder_is_refused(finished_run, tmp_path):
    workdir = copy_of(finished_run, tmp_path)
    train = workdir / "results/synthetic/train"
    shutil.copyfile(train / "resnet8/seed0/step10.h5", train / "simple8/seed0/step10.h5")
    summary = (workdir / "results/synthetic/summary.csv").read_text()
    proc = snakemake(workdir, "results/synthetic/summary.csv", check=False)
    assert proc.returncode != 0
    assert "holds {'model': 'resnet8'} but stands for {'model': 'simple8'}" in proc.stdout + proc.stderr + \
        "".join(p.read_text() for p in (workdir / "logs").rglob("*.log"))
    assert (workdir / "results/synthetic/summary.csv").read_text() == summary  # nothing already computed is lost


def test_a_flipped_byte_in_a_spectrum_is_refused_by_the_summary(finished_run, tmp_path):
    workdir = copy_of(finished_run, tmp_path)
    lanczos = workdir / "results/synthetic/hessian/simple14/seed0/step20/lanczos.h5"
    with h5py.File(lanczos, "r+") as f:
        f["weights"][0, 0] = f["weights"][0, 0] * (1 + 1e-9)  # a tiny edit, checksums recomputed by HDF5
    (workdir / "results/synthetic/summary.csv").unlink()
    proc = snakemake(workdir, "results/synthetic/summary.csv", check=False)
    log = (workdir / "logs/synthetic/summary.log").read_text()
    assert proc.returncode != 0 and f"{lanczos.relative_to(workdir)}: damaged" in log
    assert not (workdir / "results/synthetic/summary.csv").exists()
