"""`make evidence`: a committed record of each half's run, then one results document from both.

``--record RUN --out RECORD``: after a complete workflow run of config/cifar_cpu.yaml on one
class-balanced half of the shared CIFAR-10 subset (runs/cifar_cpu/half{0,1}/), keep what the
document needs in docs/evidence/cifar_cpu/records/half{0,1}/: its tables, figures and run.json
(wall and job time, the dataset by file name and md5). A half may run in its own session: its
record is committed, the run folder need not survive.

``--records RECORDS --out DOC``: docs/evidence/cifar_cpu/ from both records: half 0's tables and
figures, half 1's beside them in half1/, and results.md with both halves' verdicts.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import yaml

import hessdepth as hd
from hessdepth.document import publishable_config, render_results
from hessdepth.h5io import open_checked
from hessdepth.tables import read_csv

ROOT = Path(__file__).resolve().parent.parent

TABLES = ("summary.csv", "summary_by_model.csv")
CURVATURE_TABLES = ("summary_curvature.csv", "summary_curvature_by_model.csv")


def merged(base: dict, override: dict) -> dict:
    """``base`` updated by ``override``, dicts merged key by key (as Snakemake merges config files)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def copy_tables_and_figures(tables: Path, figures: Path, out: Path) -> list[Path]:
    """A run's tables and figure PNGs into ``out``; returns the copied figures."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        shutil.copyfile(tables / name, out / name)
    for name in CURVATURE_TABLES:  # when the run had the curvature stages on
        if (tables / name).exists():
            shutil.copyfile(tables / name, out / name)
    copied = sorted(figures.glob("fig*.png"))
    for fig in copied:
        shutil.copyfile(fig, out / fig.name)
    return [out / fig.name for fig in copied]


CURVATURE_RULES = ("block_moments", "gauss_newton")


def job_minutes(run: Path, rules: tuple[str, ...] | None = None) -> tuple[float, int]:
    """Job time (minutes) summed over a run's benchmark files, and their count; ``rules``: only those."""
    tsvs = [t for t in (run / "benchmarks").rglob("*.tsv") if rules is None or t.parent.name in rules]
    seconds = [float(t.read_text().splitlines()[-1].split("\t")[0]) for t in tsvs]
    return sum(seconds) / 60, len(seconds)


PAUSE = 300  # seconds without a running job that end a sitting; Snakemake's own gaps are far shorter


def busy_spans(run: Path) -> list[tuple[float, float]]:
    """The sittings (epoch seconds) in which the run had jobs running: the union of its jobs'
    [end - seconds, end], each job's end its benchmark file's time stamp, split where no job ran
    for ``PAUSE``. A half resumed in a later session counts its running time, not the pause."""
    jobs = sorted(
        (t.stat().st_mtime - float(t.read_text().splitlines()[-1].split("\t")[0]), t.stat().st_mtime)
        for t in (run / "benchmarks").rglob("*.tsv")
    )
    spans: list[tuple[float, float]] = []
    for start, end in jobs:
        if spans and start <= spans[-1][1] + PAUSE:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def record(run: Path, out: Path) -> None:
    """Keep one half's run (tables, figures, times, dataset) in ``out``, to commit."""
    tables = run / "results/cifar_cpu"
    copy_tables_and_figures(tables, run / "figures/cifar_cpu", out)
    data = tables / "data.h5"
    spans = busy_spans(run)
    minutes, jobs = job_minutes(run)
    curvature, stages = job_minutes(run, CURVATURE_RULES)
    with open_checked(data, attrs=("source", "md5", "half")) as f:  # the archive as `make evidence` passed it
        half = str(f.attrs["half"])
        archive = {
            "archive": str(f.attrs["source"]),
            "md5": str(f.attrs["md5"]),
            "half": int(half) if half.isdigit() else None,
        }
    facts = {
        "started": time.strftime("%Y-%m-%d", time.gmtime(spans[0][0])),
        "wall_minutes": round(sum(end - start for start, end in spans) / 60, 1),
        "sittings": len(spans),
        "job_minutes": round(minutes, 1),
        "jobs": jobs,
        "curvature_job_minutes": round(curvature, 1),
        "curvature_jobs": stages,
        "machine": hd.machine_description(),
        "data": archive,
        "data_description": hd.describe_dataset(data),
        "training_images": hd.training_set_size(data),
    }
    (out / "run.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(f"recorded {run.name} in {out}")


def wall_note(facts: dict, name: str) -> str:
    """One half's wall time while its jobs ran, and its job time."""
    sittings = facts.get("sittings", 1)
    note = (
        f"{name}: {facts['wall_minutes']:.1f} min wall clock with jobs running"
        f"{f' (in {sittings} sittings)' if sittings > 1 else ''}, from {facts['started']}, "
        f"{facts['job_minutes']:.1f} min of job time over {facts['jobs']} jobs"
    )
    if facts["curvature_jobs"]:
        note += f" ({facts['curvature_job_minutes']:.1f} min of it in the {facts['curvature_jobs']} curvature jobs)"
    return note


def power_section() -> list[str]:
    """The power study's tables (bench/RESULTS.md, section evidence_power), if it was run."""
    results = ROOT / "bench/RESULTS.md"
    text = results.read_text() if results.exists() else ""
    begin, end = "<!-- begin evidence_power -->\n", "<!-- end evidence_power -->"
    if begin not in text:
        return []
    section = text.split(begin, 1)[1].split(end, 1)[0].strip().splitlines()
    body = [line.replace("### ", "#### ") for line in section[1:]]  # its own title becomes ours
    while body and not body[0].strip():
        body.pop(0)
    return [
        "## Power: what it would take",
        "",
        "From `bench/evidence_power.py` (copied from bench/RESULTS.md):",
        "",
        *body,
        "",
    ]


def document(records: Path, out: Path, preset: Path) -> None:
    """docs/evidence/cifar_cpu/ (``out``) from the records of both halves."""
    halves = [records / "half0", records / "half1"]
    facts = [json.loads((half / "run.json").read_text()) for half in halves]
    figures = copy_tables_and_figures(halves[0], halves[0], out)
    copy_tables_and_figures(halves[1], halves[1], out / "half1")
    config = merged(yaml.safe_load((ROOT / "config.yaml").read_text()), yaml.safe_load(preset.read_text()))
    config = merged(config, {"data": facts[0]["data"]})
    wall = "; ".join(wall_note(f, f"half {i}") for i, f in enumerate(facts))
    curvature = [out / name for name in CURVATURE_TABLES if (halves[0] / name).exists()]
    if curvature and not (halves[1] / CURVATURE_TABLES[0]).exists():
        wall += "; half 1 ran without the curvature stages, so their section below is half 0's alone"
    text = render_results(
        read_csv(out / "summary.csv"),
        read_csv(out / "summary_by_model.csv"),
        figures=[p.name for p in figures],
        config=publishable_config(config),
        machine=facts[0]["machine"],
        wall_time=wall,
        sources=[*TABLES, *(p.name for p in curvature), *(f"half1/{t}" for t in TABLES)],
        data_source=facts[0]["data_description"],
        replications={"half 1": read_csv(out / "half1/summary.csv")},
        run_name="half 0",
        generator="scripts/evidence_doc.py (make evidence)",
        curvature=tuple(read_csv(p) for p in curvature) or None,
        hessian_images=config["hessian"]["samples"] or facts[0]["training_images"],
    )
    power = power_section()
    if power:
        text = text.replace(
            "\n## Skewness and kurtosis of the Hessian spectrum",
            "\n".join(["", *power]) + "\n## Skewness and kurtosis of the Hessian spectrum",
            1,
        )
    (out / "results.md").write_text(text)
    print(f"wrote {out / 'results.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--record", type=Path, metavar="RUN", help="record this half's finished run in --out")
    what.add_argument("--records", type=Path, help="write the document to --out from RECORDS/half0 and half1")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", type=Path, default=ROOT / "config/cifar_cpu.yaml")
    args = parser.parse_args()
    if args.record:
        record(args.record, args.out)
    else:
        document(args.records, args.out, args.preset)


if __name__ == "__main__":
    main()
