"""hessdepth vs hessian-eigenthings 1.0, curvlinops 3.0 and PyHessian 0.1 on the work a user runs.

The work, the same for every tool (bench/peer_tools.py): an SLQ density of the Hessian of the
cross-entropy over N real CIFAR-10 images in batches of equal size, BatchNorm with batch
statistics, P probes x M Lanczos steps; then skewness and kurtosis with 95% probe intervals and
the largest Ritz value, computed from each tool's nodes and weights by the same code.

1. Accuracy, against the exact spectrum of a small float64 net (a dense Hessian of the
   sample-weighted loss, one double-backward row at a time, written here independently of every
   tool): largest Ritz value, moments 1-4, skewness, kurtosis, and the Wasserstein-1 distance of
   the SLQ measure from the exact eigenvalues (in units of their standard deviation); once with
   batches of equal size and once with an uneven last batch.
2. Time and memory: ResNet-20 and ResNet-56 (width 16) at their seeded initialisation and after
   a short training. hessdepth runs on both of its paths: its default, which keeps every batch's
   first-order graph where they fit in the graph cache, and with the graph cache off, the path the
   paper's 50k images take (every product rebuilds each batch's graph, so its time per image does
   not depend on N). The peers keep no graphs either way. Each measurement is a fresh process
   (peak resident memory is its own), interleaved over tools and cases in every repeat; medians,
   and each tool's time over each hessdepth path's as the median of per-repeat ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

import numpy as np
import scipy.stats
import torch
import torch.nn.functional as F

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.moments import quadrature_moments, spectral_stats

import peer_tools

CACHE = common.BENCH / ".cache"
GOAL = 2.0
# What a measurement depends on besides the case; --keep reuses only what matches all of it.
TIMING_SETTINGS = ("probes", "steps", "batch_size", "train_steps", "train_images", "seed")
ACCURACY_SETTINGS = ("accuracy_probes", "accuracy_steps", "seed")


# --- the exact reference --------------------------------------------------------------------------
def exact_eigenvalues(model, batches) -> np.ndarray:
    """Eigenvalues of the Hessian of the sample-weighted mean cross-entropy (train-mode BN)."""
    model = model.train()
    params = list(model.parameters())
    n = sum(len(y) for _, y in batches)
    loss = sum(F.cross_entropy(model(x), y, reduction="sum") for x, y in batches) / n
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, create_graph=True)])
    rows = [
        torch.cat([r.reshape(-1) for r in torch.autograd.grad(g, params, retain_graph=True, materialize_grads=True)])
        for g in grad
    ]
    H = torch.stack(rows).detach()
    return torch.linalg.eigvalsh((H + H.T) / 2).numpy()


def measures(nodes, weights) -> dict:
    """What the work reports, from a tool's per-probe nodes and weights."""
    moments = quadrature_moments(nodes, weights)
    stats = spectral_stats(moments)
    return {
        "lambda_max": float(np.max(np.where(weights > 0, nodes, -np.inf))),
        "moments": moments.mean(axis=0).tolist(),
        "skewness": stats["skewness"],
        "kurtosis": stats["kurtosis"],
    }


def accuracy(tools: dict, args) -> dict:
    """Per batch layout: the exact measures and each tool's (or why it failed)."""
    depth, width, probes, steps = 8, 2, args.accuracy_probes, args.accuracy_steps
    _, images, labels, source = common.cifar_images(48)
    model = hd.seeded_model("resnet", depth, width=width, seed=0).double()
    data = {}
    for layout, n in (("batches of 16", 48), ("16, 16, 8 (uneven last batch)", 40)):
        batches = fixed_batches(images[:n], labels[:n], 16, "cpu", torch.float64)
        lam = exact_eigenvalues(model, batches)
        exact = {
            "lambda_max": float(lam.max()),
            "moments": [float(np.mean(lam**k)) for k in range(1, 5)],
            "skewness": float(scipy.stats.skew(lam)),
            "kurtosis": float(scipy.stats.kurtosis(lam, fisher=False)),
        }
        data[layout] = {"exact": exact, "n_params": len(lam)}
        for name, run in tools.items():
            try:
                nodes, weights = run(model, batches, probes, steps, args.seed)
            except Exception as err:  # a tool that cannot run this is reported, not fatal
                data[layout][name] = {"error": f"{type(err).__name__}: {err}"}
                continue
            got = measures(nodes, weights)
            rel = [abs(a - b) / abs(b) for a, b in zip(got["moments"], exact["moments"])]
            flat_nodes, flat_weights = nodes.ravel(), weights.ravel() / len(nodes)
            keep = flat_weights > 0
            w1 = scipy.stats.wasserstein_distance(flat_nodes[keep], lam, flat_weights[keep]) / lam.std()
            data[layout][name] = {**got, "moment_rel_errors": rel, "w1_over_std": w1}
    data["setup"] = dict(model=f"resnet{depth} width {width}", probes=probes, steps=steps, data=source, dtype="float64")
    return data


def accuracy_rows(data: dict) -> list[list]:
    rows = []
    for layout, results in data.items():
        if layout == "setup":
            continue
        exact = results["exact"]
        rows.append([layout, "exact", f"{exact['lambda_max']:.6g}", "", "", f"{exact['skewness']:.4g}",
                     f"{exact['kurtosis']:.4g}", ""])  # fmt: skip
        for name, got in results.items():
            if name in ("exact", "n_params"):
                continue
            if "error" in got:
                rows.append([layout, name, f"failed: {got['error']}"[:120], "", "", "", "", ""])
                continue
            rel = got["moment_rel_errors"]
            rows.append([
                layout, name,
                f"{got['lambda_max']:.6g} ({abs(got['lambda_max'] / exact['lambda_max'] - 1):.1e})",
                f"{max(rel[:2]):.1e}", f"{max(rel[2:]):.1e}",
                "{:.4g} [{:.4g}, {:.4g}]".format(*got["skewness"]),
                "{:.4g} [{:.4g}, {:.4g}]".format(*got["kurtosis"]),
                f"{got['w1_over_std']:.3f}",
            ])  # fmt: skip
    return rows


# --- time and memory, one fresh process per measurement --------------------------------------------
def trained_model(depth: int, steps: int, data, n: int):
    """ResNet-``depth`` after ``steps`` SGD steps of batch 128 on the first ``n`` images of
    ``data`` (cached on disk)."""
    path = CACHE / f"peers_resnet{depth}_step{steps}_n{n}.h5"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        images, labels = data.train_images[:n], data.train_labels[:n]
        data = hd.CifarData(images, labels, data.test_images[:100], data.test_labels[:100], data.classes)
        cfg = hd.TrainConfig(steps=steps, batch_size=128, log_every=steps, snapshot_every=steps)
        with tempfile.TemporaryDirectory() as tmp:
            hd.train(hd.seeded_model("resnet", depth, seed=0), data, cfg, [steps], {steps: path},
                     Path(tmp) / "curve.h5", None, seed=0, progress=False)  # fmt: skip
    return hd.load_checkpoint(path)[0]


def _status_kib(key: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
    return int(line.split()[1])


def child(args) -> None:
    """One tool on one case; prints its seconds, peak memory growth and results as JSON."""
    data, images, labels, _ = common.cifar_images(max(args.images, args.train_images))
    model = (
        trained_model(args.depth, args.train_steps, data, args.train_images)
        if args.state == "trained"
        else hd.seeded_model("resnet", args.depth, seed=0)
    )  # fmt: skip
    batches = fixed_batches(images[: args.images], labels[: args.images], args.batch_size, "cpu")
    run = peer_tools.TOOLS[args.tool]
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident memory starts again from now
    before = _status_kib("VmRSS")
    tic = time.perf_counter()
    nodes, weights = run(model, batches, args.probes, args.steps, args.seed)
    seconds = time.perf_counter() - tic
    growth = (_status_kib("VmHWM") - before) / 2**20
    print(json.dumps({"seconds": seconds, "peak_growth_gib": growth, **measures(nodes, weights)}))


def measure(tool: str, case: dict, args) -> dict:
    cmd = [sys.executable, __file__, "--child", "--tool", tool, "--seed", str(args.seed)]
    cmd += [f"--{k.replace('_', '-')}={v}" for k, v in case.items()]
    for k in ("probes", "steps", "batch_size", "train_steps", "train_images"):
        cmd.append(f"--{k.replace('_', '-')}={getattr(args, k)}")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def kept_results(args) -> dict | None:
    """With --keep: the earlier run in bench/results/peers.json, if it is a full run on this kind
    of machine (why not, if not)."""
    if not args.keep:
        return None
    old = common.read_result("peers")
    if old is None or old["quick"]:
        sys.exit("--keep: bench/results/peers.json holds no full run to keep; run without --keep")
    here = common.machine()["machine"]
    if old["machine"]["machine"] != here:
        sys.exit(f"--keep: the earlier run was on {old['machine']['machine']}, this is {here}; run without --keep")
    return old


def _settings(args, names) -> dict:
    return {k: getattr(args, k) for k in names}


def timing(tools: list[str], cases: list[dict], args, old: dict | None) -> tuple[dict, dict]:
    """Every tool on every case, interleaved; with an earlier run ``old`` of the same timing
    settings, its cases are kept and only the others are measured. Returns the runs and, per kept
    case index, the run it came from."""
    runs = {(i, t): [] for i in range(len(cases)) for t in tools}
    kept = {}
    origin = old and f"{old['machine']['date']}, hessdepth {old['machine']['hessdepth']}"
    if old and old["settings"]["timing"] == _settings(args, TIMING_SETTINGS):
        for j, case in enumerate(old["cases"]):
            if case in cases and all(f"{j} {t}" in old["runs"] for t in tools):
                i = cases.index(case)
                kept[i] = old["kept"].get(str(j), origin)
                for t in tools:
                    runs[i, t] = old["runs"][f"{j} {t}"]
    for r in range(args.repeats):
        for i, case in enumerate(cases):
            if i in kept:
                continue
            for tool in tools:
                runs[i, tool].append(measure(tool, case, args))
                got = runs[i, tool][-1]
                print(f"  repeat {r + 1} {case} {tool}: {got.get('seconds', got.get('error'))}", file=sys.stderr)
    return runs, kept


def _median_ratio(runs: list[dict], ours: list[dict]) -> float:
    pairs = [m["seconds"] / o["seconds"] for m, o in zip(runs, ours) if "seconds" in m and "seconds" in o]
    return float(np.median(pairs)) if pairs else float("nan")


def timing_rows(tools, cases, runs) -> tuple[list[list], dict, dict]:
    """The table rows, each tool's time over each hessdepth path's per case, and per case and
    path the fastest peer's."""
    ours = (peer_tools.OURS, peer_tools.UNCACHED)
    rows, ratios, fastest = [], {}, {}
    for i, case in enumerate(cases):
        label = f"ResNet-{case['depth']} {case['state']}, {case['images']} images"
        for tool in tools:
            done = [m for m in runs[i, tool] if "seconds" in m]
            if not done:
                rows.append([label, tool, runs[i, tool][0]["error"], "", "", "", "", ""])
                continue
            over = [_median_ratio(runs[i, tool], runs[i, path]) for path in ours]
            ratios[f"{label}: {tool}"] = dict(zip(ours, over))
            if tool not in ours:
                for path, ratio in zip(ours, over):
                    key = f"{label}, {path}"
                    fastest[key] = min(fastest.get(key, np.inf), ratio)
            last = done[-1]
            rows.append([
                label, tool, float(np.median([m["seconds"] for m in done])), *over,
                float(np.median([m["peak_growth_gib"] for m in done])), f"{last['lambda_max']:.5g}",
                "{:.3g} / {:.3g}".format(last["skewness"][0], last["kurtosis"][0]),
            ])  # fmt: skip
    return rows, ratios, fastest


def repeats_text(cases: list[dict], runs: dict, kept: dict) -> str:
    """How many interleaved repeats each case had, and which were kept from an earlier run."""
    parts = []
    for i, case in enumerate(cases):
        n = max(len(v) for (j, _), v in runs.items() if j == i)
        origin = f" (kept from the run of {kept[i]})" if i in kept else ""
        parts.append(f"ResNet-{case['depth']} {case['state']} {n}{origin}")
    return "interleaved repeats per case: " + "; ".join(parts)


def main():
    def extra(p):
        p.add_argument("--child", action="store_true", help="internal: one measurement")
        p.add_argument("--tool", default="hessdepth")
        for name, default in (("depth", 20), ("images", 128), ("train-images", 2560), ("train-steps", 200),
                              ("batch-size", 64), ("probes", 3), ("steps", 10), ("seed", 0),
                              ("accuracy-probes", 32), ("accuracy-steps", 40)):  # fmt: skip
            p.add_argument(f"--{name}", type=int, default=default)
        p.add_argument("--state", default="init", choices=["init", "trained"])
        p.add_argument("--depths", default="20,56", help="ResNet depths timed (default 20,56)")
        p.add_argument("--keep", action="store_true",
                       help="keep what bench/results/peers.json already has with the same settings on this "
                            "kind of machine (the accuracy table, whole cases) and measure the rest")  # fmt: skip

    args = common.parse_args(__doc__, repeats=3, extra=extra)
    if args.child:
        return child(args)
    if args.quick:
        args.depths, args.images, args.train_steps, args.train_images = "8", 32, 5, 256
        args.probes, args.steps, args.batch_size, args.accuracy_steps, args.accuracy_probes = 2, 4, 16, 8, 2
    tools = dict(peer_tools.TOOLS)
    try:
        peer_tools.peers_on_path()
    except ImportError as err:  # without the peers: hessdepth alone, and why
        print(f"peers not measured: {err}", file=sys.stderr)
        tools = {k: tools[k] for k in (peer_tools.OURS, peer_tools.UNCACHED)}
    old = kept_results(args)
    if old and old["settings"]["accuracy"] == _settings(args, ACCURACY_SETTINGS):
        accuracy_data = old["accuracy"]
        print(f"accuracy kept from the run of {old['machine']['date']}", file=sys.stderr)
    else:
        accuracy_data = accuracy(tools, args)
    cases = [
        dict(depth=d, state=s, images=args.images)
        for d in map(int, args.depths.split(","))
        for s in ("init", "trained")
    ]
    runs, kept = timing(list(tools), cases, args, old)
    rows, ratios, fastest = timing_rows(list(tools), cases, runs)
    verdict = (
        "The fastest peer's time over hessdepth's, per case: "
        + ", ".join(f"{label} {r:.2f}x" for label, r in fastest.items())
        + f"; goal >= {GOAL}x in every case: {'met' if min(fastest.values()) >= GOAL else 'NOT met'}"
        if fastest
        else "No peer was measured"
    )
    setup = accuracy_data["setup"]
    accuracy_headers = ["batches", "tool", "lambda_max (rel. err.)", "m1-2 rel. err.", "m3-4 rel. err.", "skewness",
                        "kurtosis", "W1 / std"]  # fmt: skip
    timing_headers = ["case", "tool", "median s", "time / hessdepth's", "time / hessdepth's, graph cache off",
                      "peak GiB", "lambda_max", "skewness / kurtosis"]  # fmt: skip
    body = f"""Accuracy: {setup["model"]}, {setup["dtype"]}, {setup["probes"]} probes x {setup["steps"]} Lanczos steps,
seed {args.seed}; data: {setup["data"]}. Columns: largest Ritz value (relative error), the largest relative
error of moments 1-2 and of 3-4 (mean of lambda^k; the probes' sampling error is part of it), skewness and
kurtosis with 95% probe intervals, and the Wasserstein-1 distance of the SLQ measure from the exact
eigenvalues over their standard deviation. hessdepth, curvlinops and PyHessian weigh samples equally;
hessian-eigenthings weighs batches equally, so its uneven-last-batch row is the Hessian of another loss.

{common.table(accuracy_headers, accuracy_rows(accuracy_data))}

Time and memory: {args.probes} probes x {args.steps} Lanczos steps, batches of {args.batch_size}, float32;
'trained' = {args.train_steps} SGD steps of batch 128 on {args.train_images} images. One fresh process per
measurement, {repeats_text(cases, runs, kept)}; peak GiB is the process's peak resident memory during
the work over its resident memory before it.

{common.table(timing_headers, rows)}

{verdict}.
"""
    common.write_results(
        "peers",
        "2. hessdepth vs hessian-eigenthings, curvlinops and PyHessian: one SLQ density with its moments",
        body,
        {
            "accuracy": accuracy_data,
            "settings": {"timing": _settings(args, TIMING_SETTINGS), "accuracy": _settings(args, ACCURACY_SETTINGS)},
            "cases": cases,
            "kept": {str(i): date for i, date in kept.items()},
            "runs": {f"{i} {t}": v for (i, t), v in runs.items()},
            "ratios": ratios,
        },
        args,
        "python bench/peers.py",
    )


if __name__ == "__main__":
    main()
