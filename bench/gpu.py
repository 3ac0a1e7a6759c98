"""GPU benchmarks and the paper-scale cost estimate (GPU-hours from GPU unit costs, or CPU-hours from CPU ones).

With CUDA: tables 1 (HVP vs gradient) and 3 (lockstep) on the GPU, the time of one HVP and one
gradient over 50,000 images (batches of 1000; synthetic images, same cost as CIFAR's) for
ResNet-20/56/110, one hessdepth training step at batch 128 for the same depths, and the Lanczos
overhead (m = 90) at ResNet-110 size; then the paper-scale estimate from those unit costs.
Without CUDA: says so, measures nothing, and writes the same estimate from the CPU unit costs
that hvp_vs_grad.py, lanczos_overhead.py and train_throughput.py stored in bench/results/,
labelled CPU.

Paper scale (config.yaml): 18 models (resnet and simple, depths 8..92) x 100k SGD steps at batch
128; per model 3 checkpoints x (Lanczos 90 steps x 10 probes + Hutchinson 64 probes x 2 HVPs)
= 3 x 1028 HVPs over 50,000 images. Costs are linear in depth (fitted on the measured depths);
a simple net costs what its ResNet twin costs (identical layers, no additions).
"""

from __future__ import annotations

import sys
from pathlib import Path

import common

import numpy as np
import torch
import yaml

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.probes import probe_vector

ROOT = Path(__file__).resolve().parent.parent


def paper_scale() -> dict:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    hvps = len(cfg["train"]["checkpoints"]) * (
        cfg["lanczos"]["iterations"] * cfg["lanczos"]["probes"] + 2 * cfg["moments"]["probes"]
    )
    return {
        "depths": cfg["models"]["depths"],
        "archs": cfg["models"]["archs"],
        "steps": cfg["train"]["steps"],
        "batch": cfg["train"]["batch_size"],
        "checkpoints": len(cfg["train"]["checkpoints"]),
        "hvps_per_model": hvps,
        "lanczos_runs_per_model": len(cfg["train"]["checkpoints"]) * cfg["lanczos"]["probes"],
        "images": 50_000,
    }


def linear(points: dict[int, float]):
    d = np.array(sorted(points), dtype=float)
    y = np.array([points[k] for k in sorted(points)])
    b, a = np.polyfit(d, y, 1) if len(d) > 1 else (0.0, 0.0)
    if b <= 0 or a + b * d.min() <= 0:  # one point, or noise: proportional to depth instead
        b, a = float(np.sum(y * d) / np.sum(d * d)), 0.0
    return lambda depth: a + b * depth


def estimate(
    step_s: dict[int, float], hvp_image_s: dict[int, float], lanczos_run_s: float, unit: str, label: str
) -> tuple[str, dict]:
    """Table of the paper-scale cost from per-step training time and per-image HVP time by depth;
    ``unit`` names an hour of the device measured ("CPU", "GPU"), ``label`` says what it is."""
    p = paper_scale()
    step, hvp = linear(step_s), linear(hvp_image_s)
    rows, total_train, total_hess = [], 0.0, 0.0
    for depth in p["depths"]:
        train_h = p["steps"] * step(depth) / 3600
        hess_h = (p["hvps_per_model"] * hvp(depth) * p["images"] + p["lanczos_runs_per_model"] * lanczos_run_s) / 3600
        n = len(p["archs"])
        total_train += n * train_h
        total_hess += n * hess_h
        rows.append([depth, n, step(depth), train_h, hvp(depth) * p["images"], hess_h, n * (train_h + hess_h)])
    total = total_train + total_hess
    text = f"""**{label}.** {len(p["depths"]) * len(p["archs"])} models x {p["steps"]:,} steps at batch {
        p["batch"]
    }; per model
{p["checkpoints"]} checkpoints x {p["hvps_per_model"] // p["checkpoints"]} HVPs = {p["hvps_per_model"]} HVPs over {
        p["images"]:,} images,
plus {p["lanczos_runs_per_model"]} Lanczos runs' bookkeeping ({
        lanczos_run_s:.3g} s each, m = 90, ResNet-110 size: an upper bound).
Unit costs measured at depths {sorted(step_s)} (training) and {sorted(hvp_image_s)} (HVP), fitted linear in depth
(a + b depth; proportional to depth where that fit is not increasing).

{
        common.table(
            [
                "depth",
                "models",
                "s per training step",
                f"training {unit}-h per model",
                "s per HVP (50k images)",
                f"Hessian {unit}-h per model",
                f"{unit}-h both archs",
            ],
            rows,
        )
    }

Total: {total_train:,.0f} h training + {total_hess:,.0f} h Hessian = **{total:,.0f} {unit}-hours**
({total / 24:,.0f} days on one such {"card" if unit == "GPU" else "machine"}).
"""
    return text, {"train_h": total_train, "hessian_h": total_hess, "total_h": total}


def cpu_estimate(quick: bool) -> tuple[str, dict] | tuple[None, str]:
    hv, lo, tr = (common.read_result(n, quick) for n in ("hvp_vs_grad", "lanczos_overhead", "train_throughput"))
    missing = [n for n, r in zip(("hvp_vs_grad", "lanczos_overhead", "train_throughput"), (hv, lo, tr)) if r is None]
    if missing:
        return (
            None,
            f"run {', '.join(f'bench/{m}.py' + (' --quick' if quick else '') for m in missing)} first "
            "(their results/*.json are the CPU unit costs)",
        )
    # uncached: the first-order graphs of 50,000 images do not fit in memory
    hvp = {r["depth"]: r["median"]["double_backward"] / r["n_images"] for r in hv["results"] if r["bn_mode"] == "batch"}
    biggest = max(lo["hvp_s"], key=int)
    if lo.get("composition") == "double_backward":  # a cached product would understate the cost
        hvp[lo["depth"]] = lo["hvp_s"][biggest] / int(biggest)
    shared, shared_note = shared_graph_speedup(quick)
    hvp = {depth: cost / shared(depth) for depth, cost in hvp.items()}
    step = {r["depth"]: r["median"]["hessdepth (defaults)"] / r["steps"] for r in tr["results"]}
    loads = [ld[0] for r in hv["results"] + tr["results"] for ld in r["loads"]] + [
        ld[0] for ld in lo["results"]["loads"]
    ]
    label = f"CPU estimate: hours of this {common.machine()['cpu_count']}-core CPU machine, not GPU-hours"
    text, totals = estimate(step, hvp, lo["overhead_s"], "CPU", label)
    batch_depths = "/".join(str(r["depth"]) for r in hv["results"] if r["bn_mode"] == "batch")
    note = (
        f"\nCPU unit costs: the {common.machine()['machine']} above, {torch.get_num_threads()} threads, taken from "
        "bench/results/{hvp_vs_grad,lanczos_overhead,train_throughput}.json (HVP: double_backward, as "
        "whole-training-set graphs do not fit a cache, bn_mode batch, "
        f"per image at {hv['results'][0]['n_images']} images for ResNet-{batch_depths}"
        + (f" and {biggest} images for ResNet-{lo['depth']}" if lo["depth"] in hvp else "")
        + "; training: hessdepth defaults). "
        f"Load during those runs: 1-min average {min(loads):.1f}-{max(loads):.1f} on {common.machine()['cpu_count']} "
        "cores, so an idle machine would be faster, but not by the orders of magnitude that matter here.\n"
    )
    return text + note + shared_note, totals


def shared_graph_speedup(quick: bool):
    """(depth -> speed-up of a probe-step with the config's probes sharing each batch's graph over
    one probe at a time, from bench/results/shared_graphs.json (1 without it), and a note)."""
    p, cfg = paper_scale(), yaml.safe_load((ROOT / "config.yaml").read_text())
    hutchinson = 2 * cfg["moments"]["probes"] * p["checkpoints"] / p["hvps_per_model"]
    sg = common.read_result("shared_graphs", quick)
    if sg is None:
        return (lambda depth: 1.0), (
            f"\nHVPs one probe at a time (run bench/shared_graphs.py for the shared-graph "
            f"speed-up); the Hutchinson stage is {hutchinson:.0%} of the HVPs.\n"
        )
    measured = {}
    for r in sg["results"]:
        k = max(
            int(name.split("=")[1].split()[0])
            for name in r["speedup"]
            if name.endswith("shared") and int(name.split("=")[1].split()[0]) <= cfg["lanczos"]["probes"]
        )
        measured[r["depth"]] = (k, r["speedup"][f"k={k} shared"])
    depths = sorted(measured)

    def speedup(depth):  # the nearest measured depth's
        return measured[min(depths, key=lambda d: abs(d - depth))][1]

    said = ", ".join(f"ResNet-{d} {s:.2f}x at k = {k}" for d, (k, s) in sorted(measured.items()))
    return speedup, (
        f"\nHVPs with the probes sharing each batch's first-order graph (lanczos.lockstep: auto): per "
        f"probe-step {said} faster than one probe at a time (bench/results/shared_graphs.json; the "
        f"nearest measured depth's factor for the others). The Hutchinson stage ({hutchinson:.0%} of "
        f"the HVPs) shares graphs the same way.\n"
    )


def gpu_measure(dev: torch.device, repeats: int, small: bool = False) -> tuple[str, dict]:
    """Everything measured on ``dev``; ``small``: tiny sizes, to check this code path on the CPU."""
    import hvp_vs_grad
    import lanczos_overhead
    import lockstep
    import train_throughput

    cuda = dev.type == "cuda"
    card = torch.cuda.get_device_name(dev) if cuda else f"{dev} (code-path check, not a GPU)"
    depths, n, big_n, big_batch, m = ((8, 14), 16, 64, 32, 10) if small else ((20, 56, 110), 256, 50_000, 1000, 90)
    parts, data = [f"Card: {card}.\n"], {"card": card}
    t1 = [hvp_vs_grad.measure(d, mode, n, n, repeats, dev) for d in depths[:2] for mode in hd.BN_MODES]
    parts.append("### Table 1 on the GPU\n\n" + hvp_vs_grad.report(t1))
    t3 = lockstep.measure(dev, depths[0], n, [1, 2] if small else [1, 2, 4, 8], [1, 8], 2, repeats)
    parts.append("### Table 3 on the GPU\n\n" + lockstep.report(t3))
    data.update(table1=t1, table3=t3)

    synth = hd.synthetic_dataset(big_n, 10, 0)
    hvp_image, rows, big = {}, [], {}
    for depth in depths:
        batch = big_batch
        while True:  # halve the batch where one of 1000 does not fit the card (said in the table)
            try:
                model = hd.seeded_model("resnet", depth, seed=0).to(dev)
                op = hd.HessianOperator(
                    model, fixed_batches(synth.train_images, synth.train_labels, batch, dev), "batch"
                )
                v = probe_vector(op.num_params, 0, 0, device=dev)
                v = (v / v.norm()).float()
                print(f"resnet{depth} over {big_n:,} images, batches of {batch}", file=sys.stderr)
                if cuda:
                    torch.cuda.reset_peak_memory_stats(dev)
                res = common.interleaved(
                    {"gradient": op.gradient, "HVP": lambda op=op, v=v: op.matvec(v)}, repeats, 1, dev
                )
                break
            except torch.cuda.OutOfMemoryError:
                op = model = v = None
                torch.cuda.empty_cache()
                batch //= 2
        res["batch"], res["composition"] = batch, op.composition
        res["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan")
        hvp_image[depth] = res["median"]["HVP"] / big_n
        rows.append(
            [
                f"resnet{depth}",
                batch,
                op.composition,
                res["median"]["gradient"],
                res["median"]["HVP"],
                common.median_ratio(res["times"], "HVP", "gradient"),
                res["peak_gib"],
            ]
        )
        big[depth] = res
        op = model = v = None
        if cuda:
            torch.cuda.empty_cache()
    parts.append(
        f"### One HVP over {big_n:,} images (batches of {big_batch} unless the card needed smaller; bn_mode batch, "
        "default composition auto)\n\n"
        + common.table(["model", "batch", "composition", "gradient s", "HVP s", "HVP/grad", "peak GiB allocated"], rows)
        + "\n"
    )

    step_s = {}
    for depth in depths:
        r = train_throughput.measure(
            depth, synth, 16 if small else 128, 2 if small else 20, repeats, 2 if small else 5, dev, compile_ok=False
        )
        step_s[depth] = r["median"]["hessdepth (defaults)"] / r["steps"]
        parts.append(train_throughput.report(r))
        data.setdefault("train", []).append(r)

    diag = lanczos_overhead.DiagonalOperator(hd.count_params(hd.build_model("resnet", depths[-1])), device=dev)
    lz = common.interleaved({"slq": lambda: hd.slq(diag, iterations=m, probes=1)}, repeats, 1, dev)
    lanczos_s = lz["median"]["slq"]
    parts.append(
        f"Lanczos bookkeeping (slq on a diagonal operator, ResNet-{depths[-1]} size, m = {m}): {lanczos_s:.3g} s.\n"
    )
    text, totals = estimate(step_s, hvp_image, lanczos_s, "GPU", f"GPU estimate: hours of one {card}")
    parts.append(f"### Paper-scale estimate ({card})\n\n" + text)
    data.update(hvp_50k=big, lanczos_s=lanczos_s, estimate=totals)
    return "\n".join(parts), data


def main():
    args = common.parse_args(
        __doc__,
        repeats=3,
        extra=lambda p: p.add_argument(
            "--check-on-cpu", action="store_true", help="run the GPU code path on the CPU at tiny sizes; writes nothing"
        ),
    )
    if args.check_on_cpu:
        body, _ = gpu_measure(torch.device("cpu"), 1, small=True)
        print(body)
        return
    if torch.cuda.is_available() and not args.quick:
        body, data = gpu_measure(torch.device("cuda"), args.repeats)
        common.write_results("gpu", "6. GPU", body, data, args, "python bench/gpu.py")
    else:
        why = (
            "no GPU (torch.cuda.is_available() is False): nothing measured on a GPU"
            if not torch.cuda.is_available()
            else "--quick: GPU measurements skipped"
        )
        print(why)
        if not args.no_write and not args.quick:
            common.write_results(
                "gpu",
                "6. GPU",
                f"Not run here: {why}. `python bench/gpu.py` on a CUDA machine "
                "measures tables 1 and 3, HVPs over 50,000 images and training steps there, and "
                "writes the GPU-hours estimate.\n",
                {"skipped": why},
                args,
                "python bench/gpu.py",
            )
    text, totals = cpu_estimate(args.quick)
    if text is None:
        print(f"CPU paper-scale estimate not written: {totals}")
        return
    common.write_results(
        "paper_scale_cpu",
        "6b. Paper-scale cost from CPU unit costs (CPU, not GPU)",
        text,
        {"estimate": totals},
        args,
        "python bench/gpu.py",
    )


if __name__ == "__main__":
    main()
