"""scripts/evidence_doc.py: one document from the preset's runs on both halves, verdicts side by side."""
import subprocess
import sys

import fake_results as fr
import hessdepth as hd
from conftest import ROOT
from hessdepth.summary import COLUMNS, BY_MODEL_COLUMNS, aggregate_by_model, summarize, write_csv
from test_summary import DENSITY, STATS, make_runs


def fake_run(run, tmp_path, tail_of_simple: float) -> None:
    """A finished run's tables, figures, dataset file and benchmarks, from small fake spectra."""
    files = make_runs(tmp_path / run.name, [(a, d, s, (tail_of_simple if a == "simple" else 2.0) * (1 + 0.1 * s), 0.5, False)
                                            for a in ("resnet", "simple") for d in (8, 14) for s in (0, 1, 2)])
    summary = summarize(**files, density=DENSITY, stats=STATS)
    tables = run / "results/cifar10"
    tables.mkdir(parents=True)
    write_csv(tables / "summary.csv", summary.rows, COLUMNS)
    write_csv(tables / "summary_by_model.csv", aggregate_by_model(summary.rows, 0.95), BY_MODEL_COLUMNS)
    data = hd.synthetic_dataset(20, 10, seed=0)
    hd.write_dataset_h5(tables / "data.h5", data, {"dataset": "cifar10", "source": "subset.tar.gz",
                                                   "md5": "0" * 32, "synthetic": False, "half": 0})
    (run / "figures").mkdir()
    (run / "figures/fig3_moments.png").write_bytes(b"png")
    (run / "benchmarks/cifar10/train").mkdir(parents=True)
    (run / "benchmarks/cifar10/train/resnet8_seed0.tsv").write_text("s\th:m:s\n60.0\t0:01:00\n")


def test_evidence_document_reports_both_halves_and_no_paths(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    for half, tail in (("half0", 8.0), ("half1", 0.5)):
        fake_run(runs / half, tmp_path, tail)
    (runs / "started").write_text("0")
    subprocess.run([sys.executable, str(ROOT / "scripts/evidence_doc.py"), "--runs", str(runs), "--out", str(out)],
                   check=True, capture_output=True, text=True)
    text = (out / "results.md").read_text()
    assert (out / "half1/summary.csv").exists() and (out / "fig3_moments.png").exists()
    assert "| # | step | half 0 | half 1 | same |" in text
    assert "| 3 | 10 | **holds** | **reversed** | **no** |" in text  # the halves disagree: said so
    assert "subset.tar.gz, md5 " + "0" * 32 in text and "2.0 min of job time summed over 2 jobs" in text
    assert str(tmp_path) not in text
