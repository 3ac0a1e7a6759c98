"""scripts/evidence_doc.py: one document from the preset's runs on both halves, verdicts side by side."""

import os
import shutil
import subprocess
import sys

import hessdepth as hd
from conftest import ROOT
from hessdepth.summary import (
    BY_MODEL_COLUMNS,
    COLUMNS,
    CURVATURE_BY_MODEL_COLUMNS,
    CURVATURE_COLUMNS,
    aggregate_by_model,
    aggregate_curvature,
    summarize,
    summarize_curvature,
)
from hessdepth.tables import write_csv
from test_summary import DENSITY, STATS, curvature_files, make_runs


def fake_run(run, tmp_path, tail_of_simple: float, curvature: bool = False) -> None:
    """A finished run's tables, figures, dataset file and benchmarks, from small fake spectra
    (and its curvature tables, with ``curvature``)."""
    files = make_runs(
        tmp_path / run.name,
        [
            (a, d, s, (tail_of_simple if a == "simple" else 2.0) * (1 + 0.1 * s), 0.5, False)
            for a in ("resnet", "simple")
            for d in (8, 14)
            for s in (0, 1, 2)
        ],
    )
    summary = summarize(**files, density=DENSITY, stats=STATS)
    tables = run / "results/cifar_cpu"
    tables.mkdir(parents=True)
    write_csv(tables / "summary.csv", summary.rows, COLUMNS)
    write_csv(tables / "summary_by_model.csv", aggregate_by_model(summary.rows, 0.95), BY_MODEL_COLUMNS)
    if curvature:
        (tmp_path / f"{run.name}-curvature").mkdir()
        rows = summarize_curvature(
            *curvature_files(
                tmp_path / f"{run.name}-curvature",
                [
                    (a, d, s, 2.0 if a == "simple" else 1.0, False)
                    for a in ("resnet", "simple")
                    for d in (8, 14)
                    for s in (0, 1, 2)
                ],
            ),
            stats=STATS,
        )
        write_csv(tables / "summary_curvature.csv", rows, CURVATURE_COLUMNS)
        write_csv(
            tables / "summary_curvature_by_model.csv", aggregate_curvature(rows, 0.95), CURVATURE_BY_MODEL_COLUMNS
        )
        (run / "benchmarks/cifar_cpu/block_moments").mkdir(parents=True)
        (run / "benchmarks/cifar_cpu/block_moments/resnet8_seed0_step240.tsv").write_text("s\th:m:s\n30.0\t0:00:30\n")
    data = hd.synthetic_dataset(20, 10, seed=0)
    hd.write_dataset_h5(
        tables / "data.h5",
        data,
        {"dataset": "cifar10", "source": "subset.tar.gz", "md5": "0" * 32, "synthetic": False, "half": 0},
    )
    (run / "figures/cifar_cpu").mkdir(parents=True)
    (run / "figures/cifar_cpu/fig3_moments.png").write_bytes(b"png")
    (run / "benchmarks/cifar_cpu/train").mkdir(parents=True)
    (run / "benchmarks/cifar_cpu/train/resnet8_seed0.tsv").write_text("s\th:m:s\n60.0\t0:01:00\n")


def test_evidence_document_from_both_halves_records_reports_both_and_no_paths(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    for half, tail in (("half0", 8.0), ("half1", 0.5)):
        fake_run(runs / half, tmp_path, tail, curvature=half == "half0")
    end = 1.8e9  # half 0 resumed three hours after its first job ended: two sittings, 1.5 min of running
    os.utime(runs / "half0/benchmarks/cifar_cpu/train/resnet8_seed0.tsv", (end, end))
    os.utime(runs / "half0/benchmarks/cifar_cpu/block_moments/resnet8_seed0_step240.tsv", (end + 3 * 3600,) * 2)
    script = [sys.executable, str(ROOT / "scripts/evidence_doc.py")]
    for half in ("half0", "half1"):  # each half's record, as `make evidence-half0` keeps it
        subprocess.run([*script, "--record", runs / half, "--out", out / "records" / half], check=True)
    shutil.rmtree(runs)  # the document needs only the records
    subprocess.run([*script, "--records", out / "records", "--out", out], check=True, capture_output=True, text=True)
    text = (out / "results.md").read_text()
    assert (out / "half1/summary.csv").exists() and (out / "fig3_moments.png").exists()
    assert "| # | step | half 0 | half 1 | same |" in text
    disagree = "| 3 | 10 | **holds / P/kurtosis: holds** | **reversed / P/kurtosis: reversed** | **no** |"
    assert disagree in text  # the halves disagree: said so
    assert (
        "subset.tar.gz, md5 " + "0" * 32 in text
        and "half 0: 1.5 min wall clock with jobs running (in 2 sittings), from 2027-01-15, "
        "1.5 min of job time over 2 jobs (0.5 min of it in the 1 curvature jobs); half 1: 1.0 min wall clock"
        in text
    )
    assert str(tmp_path) not in text and str(tmp_path) not in (out / "records/half0/run.json").read_text()
    assert "## Where the outliers live" in text and "`summary_curvature.csv`" in text  # from half 0's own tables
    assert "half 1 ran without the curvature stages" in text
    assert '"md5": "' + "0" * 32 + '"' in text  # the archive the runs read, not config.yaml's
