"""Shared bench helpers: arguments, interleaved timing, machine description, results writer.

Every benchmark times its variants interleaved (A, B, C, A, B, C, ...) so that the ratios
compare runs made side by side on a machine whose load changes, records os.getloadavg()
with every repeat, and reports medians over the repeats.
"""

from __future__ import annotations

import os

# libgomp threads spin while they wait; on a shared machine (other jobs on the same cores) that
# made 2-thread torch 3.5-4x slower than 1 thread here. Passive waiting removes it. It must be set
# before torch is imported, so every bench script imports this module first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import fcntl
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

import hessdepth as hd

# Like every workflow job (hessdepth.workflow.setup_job): glibc keeps freed memory for reuse. bench/cpu_allocator.py
# measures the effect; HESSDEPTH_DEFAULT_MALLOC=1 leaves glibc's defaults.
ALLOCATOR = (
    "default"
    if os.environ.get("HESSDEPTH_DEFAULT_MALLOC") or not hd.keep_freed_cpu_memory()
    else "glibc, freed memory kept (hd.keep_freed_cpu_memory)"
)

BENCH = Path(__file__).resolve().parent
RESULTS_MD = BENCH / "RESULTS.md"
RESULTS_DIR = BENCH / "results"
ORDER = [
    "hvp_vs_grad",
    "hvp_memory",
    "peers",
    "product_options",
    "lockstep",
    "shared_graphs",
    "curvature_cost",
    "lanczos_overhead",
    "train_throughput",
    "cpu_allocator",
    "gpu",
    "paper_scale_cpu",
    "evidence_power",
]
CIFAR_SUBSET = BENCH.parent.parent / "shared/data/cifar10-subset/cifar-10-python-subset.tar.gz"  # ../shared


def parse_args(doc: str, repeats: int, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds: a smoke check, not a measurement")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"interleaved repeats (default {repeats})")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    if extra:
        extra(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats = min(args.repeats, 2)
    return args


def load() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, device="cpu", log: bool = True
) -> dict:
    """Time each variant ``repeats`` times, interleaved, after ``warmup`` untimed calls each.

    Returns {"times": {name: [s, ...]}, "loads": [loadavg per repeat], "median": {name: s},
    "first": {name: s of the first warm-up call}}.
    A variant may return a number: then that number (not the wall time) is its measurement,
    so callers can time a part of the call themselves.
    """
    first = {}
    for w in range(warmup):
        for name, fn in variants.items():
            sync(device)
            tic = time.perf_counter()
            fn()
            sync(device)
            if w == 0:
                first[name] = time.perf_counter() - tic
    times = {name: [] for name in variants}
    loads = []
    for r in range(repeats):
        for name, fn in variants.items():
            sync(device)
            tic = time.perf_counter()
            out = fn()
            sync(device)
            elapsed = time.perf_counter() - tic
            times[name].append(float(out) if isinstance(out, (int, float)) else elapsed)
        loads.append(load())
        if log:
            print(
                f"  repeat {r + 1}/{repeats} load {loads[-1]}: "
                + ", ".join(f"{n} {t[-1]:.3g}s" for n, t in times.items()),
                file=sys.stderr,
                flush=True,
            )
    return {
        "times": times,
        "loads": loads,
        "first": first,
        "median": {n: statistics.median(t) for n, t in times.items()},
    }


def median_ratio(times: dict, num: str, den: str) -> float:
    """Median over repeats of the per-repeat ratio num/den (both measured in the same repeat)."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def git_state() -> str:
    root = BENCH.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lib/hessdepth"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return f"{head}{' + uncommitted changes in lib/hessdepth' if dirty else ''}"
    except OSError:
        return "unknown"


_GIT_AT_START = git_state()  # the library this process imported (it may change while a benchmark runs)


def machine() -> dict:
    return {
        "machine": hd.machine_description(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "cpu_allocator": ALLOCATOR,
        "hessdepth": f"{hd.__version__} (git {_GIT_AT_START} at the start)",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def cifar_images(n: int, seed: int = 0):
    """(uint8 images, labels, source): the first ``n`` training images of the real CIFAR subset
    when it is on disk, else of the synthetic dataset."""
    if CIFAR_SUBSET.exists():
        data, source = hd.read_cifar_archive(CIFAR_SUBSET), f"real CIFAR-10 subset ({CIFAR_SUBSET.name})"
    else:
        data, source = hd.synthetic_dataset(max(n, 1000), 100, seed), "synthetic (hd.synthetic_dataset, seed 0)"
    if n > len(data.train_labels):
        raise ValueError(f"asked for {n} images, the data has {len(data.train_labels)}")
    return data, data.train_images[:n], data.train_labels[:n], source


def case(model, depth: int, n_images: int, batch_size: int, source: str, device) -> dict:
    """What a measurement ran on, for its results: model depth and size, data, batches, device."""
    return dict(
        depth=depth,
        n_images=n_images,
        batch_size=batch_size,
        data=source,
        device=str(device),
        n_params=hd.count_params(model),
    )


def table(headers: list[str], rows: list[list]) -> str:
    def fmt(x):
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def load_summary(loads: list) -> str:
    ones = [avg[0] for avg in loads]
    if not ones:
        return "n/a"
    cores = os.cpu_count() or 1
    busy = (
        " -- LOADED: other jobs shared the cores, absolute times are inflated" if max(ones) > 0.75 * cores + 0.5 else ""
    )
    spread = f"{min(ones):.2f}-{max(ones):.2f} (median {statistics.median(ones):.2f})"
    return f"1-min load average {spread} on {cores} cores{busy}"


def write_results(name: str, title: str, body: str, data: dict, args, command: str) -> None:
    """Print ``body``; unless --no-write, store ``data`` in bench/results/<name>.json and replace
    this benchmark's section of bench/RESULTS.md (quick runs go to <name>.quick.json only)."""
    info = machine()
    header = (
        f"## {title}\n\n`{command}`{' (--quick: smoke check, not a measurement)' if args.quick else ''}\n\n"
        f"Machine: {info['machine']}; {info['torch_threads']} torch threads, "
        f"OMP_WAIT_POLICY={info['OMP_WAIT_POLICY']}; CPU allocator: {info['cpu_allocator']}; "
        f"hessdepth {info['hessdepth']}; "
        f"run {info['date']}.\n\n"
    )
    section = header + body.strip() + "\n"
    print("\n" + section)
    if args.no_write:
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{name}{'.quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"machine": info, "quick": args.quick, **data}, indent=1, default=str) + "\n")
    if args.quick:
        return
    with open(BENCH / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = (
            RESULTS_MD.read_text()
            if RESULTS_MD.exists()
            else (
                "# hessdepth benchmarks\n\nWritten by the scripts in bench/ (see bench/README.md); each section is "
                "replaced by its script's latest default-mode run.\n"
            )
        )
        head = text.split("<!-- begin ", 1)[0].rstrip()
        blocks = dict(re.findall(r"<!-- begin (\S+) -->\n(.*?)<!-- end \1 -->", text, flags=re.S))
        blocks[name] = section
        names = sorted(blocks, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))
        text = head + "\n\n" + "\n".join(f"<!-- begin {k} -->\n{blocks[k]}<!-- end {k} -->\n" for k in names)
        tmp = RESULTS_MD.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, RESULTS_MD)


def read_result(name: str, quick: bool = False) -> dict | None:
    path = RESULTS_DIR / f"{name}{'.quick' if quick else ''}.json"
    return json.loads(path.read_text()) if path.exists() else None
