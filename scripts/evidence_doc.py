"""`make evidence`, last step: one results document from the CPU preset run on both halves.

Reads runs/cifar_cpu/half{0,1}/ (each a complete workflow run of config/cifar_cpu.yaml on one
class-balanced half of the shared CIFAR-10 subset) and writes docs/evidence/cifar_cpu/: half 0's
tables and figures, half 1's beside them in half1/, and results.md with both halves' verdicts.
"""

import argparse
import shutil
import time
from pathlib import Path

import yaml

import hessdepth as hd
from hessdepth.findings import publishable_config, render_results
from hessdepth.h5io import open_checked
from hessdepth.summary import read_csv

ROOT = Path(__file__).resolve().parent.parent

TABLES = ("summary.csv", "summary_by_model.csv")
CURVATURE_TABLES = ("summary_curvature.csv", "summary_curvature_by_model.csv")


def merged(base: dict, override: dict) -> dict:
    """``base`` updated by ``override``, dicts merged key by key (as Snakemake merges config files)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def copy_run(run: Path, out: Path) -> list[Path]:
    """The run's tables and figure PNGs into ``out``; returns the copied figures."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        shutil.copyfile(run / "results/cifar_cpu" / name, out / name)
    for name in CURVATURE_TABLES:  # when the run had the curvature stages on
        if (run / "results/cifar_cpu" / name).exists():
            shutil.copyfile(run / "results/cifar_cpu" / name, out / name)
    figures = sorted((run / "figures/cifar_cpu").glob("fig*.png"))
    for fig in figures:
        shutil.copyfile(fig, out / fig.name)
    return [out / fig.name for fig in figures]


CURVATURE_RULES = ("block_moments", "gauss_newton")


def job_minutes(run: Path, rules: tuple[str, ...] | None = None) -> tuple[float, int]:
    """Job time (minutes) summed over a run's benchmark files, and their count; ``rules``: only those."""
    tsvs = [t for t in (run / "benchmarks").rglob("*.tsv") if rules is None or t.parent.name in rules]
    seconds = [float(t.read_text().splitlines()[-1].split("\t")[0]) for t in tsvs]
    return sum(seconds) / 60, len(seconds)


def wall_note(run: Path, name: str) -> str:
    """One half's wall time, from its dataset file to its last table or figure, and its job time."""
    first = (run / "results/cifar_cpu/data.h5").stat().st_mtime
    last = max(
        p.stat().st_mtime
        for d in ("results/cifar_cpu", "figures/cifar_cpu")
        for p in (run / d).rglob("*")
        if p.is_file()
    )
    minutes, jobs = job_minutes(run)
    note = (
        f"{name}: {(last - first) / 60:.1f} min wall clock on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(first))}"
        ", "
        f"{minutes:.1f} min of job time over {jobs} jobs"
    )
    curvature, stages = job_minutes(run, CURVATURE_RULES)
    if stages:
        note += f" ({curvature:.1f} min of it in the {stages} curvature jobs)"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/cifar_cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/evidence/cifar_cpu")
    parser.add_argument("--preset", type=Path, default=ROOT / "config/cifar_cpu.yaml")
    args = parser.parse_args()
    halves = [args.runs / "half0", args.runs / "half1"]
    figures = copy_run(halves[0], args.out)
    copy_run(halves[1], args.out / "half1")
    data = halves[0] / "results/cifar_cpu/data.h5"
    config = merged(yaml.safe_load((ROOT / "config.yaml").read_text()), yaml.safe_load(args.preset.read_text()))
    with open_checked(data, attrs=("source", "md5")) as f:  # the archive as `make evidence` passed it
        archive = {"archive": str(f.attrs["source"]), "md5": str(f.attrs["md5"]), "half": 0}
    config = merged(config, {"data": archive})
    wall = "; ".join(wall_note(run, f"half {i}") for i, run in enumerate(halves))
    curvature = [args.out / name for name in CURVATURE_TABLES if (args.out / name).exists()]
    if curvature and not (halves[1] / "results/cifar_cpu" / CURVATURE_TABLES[0]).exists():
        wall += "; half 1 ran without the curvature stages, so their section below is half 0's alone"
    text = render_results(
        read_csv(args.out / "summary.csv"),
        read_csv(args.out / "summary_by_model.csv"),
        figures=[p.name for p in figures],
        config=publishable_config(config),
        machine=hd.machine_description(),
        wall_time=wall,
        sources=[*TABLES, *(p.name for p in curvature), *(f"half1/{t}" for t in TABLES)],
        data_source=hd.describe_dataset(data),
        replications={"half 1": read_csv(args.out / "half1/summary.csv")},
        run_name="half 0",
        generator="scripts/evidence_doc.py (make evidence)",
        curvature=tuple(read_csv(p) for p in curvature) or None,
        hessian_images=config["hessian"]["samples"] or hd.training_set_size(data),
    )
    power = power_section()
    if power:
        text = text.replace(
            "\n## Skewness and kurtosis of the Hessian spectrum",
            "\n".join(["", *power]) + "\n## Skewness and kurtosis of the Hessian spectrum",
            1,
        )
    (args.out / "results.md").write_text(text)
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
