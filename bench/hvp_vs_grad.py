"""HVP vs gradient: HessianOperator.matvec for every composition vs HessianOperator.gradient().

Same model (seeded ResNet at init, seed 0), same data (first 256 training images of the real
CIFAR subset: one batch of 256 for ResNet-20, the operator's batches of 64 for deeper nets, to bound
memory), same device and BN mode.
Per repeat the gradient and every composition run interleaved; the ratio HVP/grad is taken
within each repeat and its median reported. Goal (issue 6): HVP <= 2.5x a gradient.
"""

from __future__ import annotations

import sys

import common

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.probes import probe_vector

GOAL = 2.5


def measure(
    depth: int,
    bn_mode: str,
    n_images: int,
    batch_size: int,
    repeats: int,
    device="cpu",
    compositions=tuple(hd.COMPOSITIONS),
) -> dict:
    _, images, labels, source = common.cifar_images(n_images)
    model = hd.seeded_model("resnet", depth, seed=0).to(device)
    batches = fixed_batches(images, labels, batch_size, device)
    ops = {c: hd.HessianOperator(model, batches, bn_mode, c) for c in compositions}
    v = probe_vector(hd.count_params(model), 0, 0, device=device)
    v = (v / v.norm()).float()
    variants = {"gradient": ops[compositions[0]].gradient}
    variants.update({c: (lambda op=op: op.matvec(v)) for c, op in ops.items()})
    print(f"resnet{depth} bn_mode={bn_mode} {n_images} images on {device}", file=sys.stderr)
    res = common.interleaved(variants, repeats, warmup=1, device=device)
    res["ratio"] = {c: common.median_ratio(res["times"], c, "gradient") for c in compositions}
    auto = hd.HessianOperator(model, batches, bn_mode)  # what the default "auto" picks here
    res.update(
        default=auto.composition,
        graph_gib=auto.graph_bytes / 2**30,
        bn_mode=bn_mode,
        **common.case(model, depth, n_images, batch_size, source, device),
    )
    return res


def report(results: list[dict]) -> str:
    rows = []
    for r in results:
        g = r["median"]["gradient"]
        rows.append([f"resnet{r['depth']}", r["bn_mode"], "gradient", g, 1.0, r["first"]["gradient"], ""])
        for c, ratio in r["ratio"].items():
            mark = " (default)" if c == r["default"] else ""
            rows.append(
                [
                    f"resnet{r['depth']}",
                    r["bn_mode"],
                    c + mark,
                    r["median"][c],
                    ratio,
                    r["first"][c],
                    "yes" if ratio <= GOAL else "no",
                ]
            )
    loads = [avg for r in results for avg in r["loads"]]
    r0 = results[0]
    default_ratios = ", ".join(
        f"resnet{r['depth']}/{r['bn_mode']} {r['default']} {r['ratio'][r['default']]:.2f}x" for r in results
    )
    graphs = ", ".join(f"resnet{r['depth']}/{r['bn_mode']} {r['graph_gib']:.2f} GiB" for r in results)
    best = {f"resnet{r['depth']}/{r['bn_mode']}": min(r["ratio"], key=r["ratio"].get) for r in results}
    met = "yes" if all(r["ratio"][r["default"]] <= GOAL for r in results) else "no"
    return f"""Data: {r0["data"]}, {r0["n_images"]} images as batches of {r0["batch_size"]} on {r0["device"]}; model at
its seeded initialisation; float32 products. Time = median over {len(r0["loads"])} interleaved repeats (after one
warm-up call each, whose time is the 'first call' column; for double_backward_cached the first call also builds
the kept first-order graph). Ratio = median over repeats of HVP/gradient measured in the same repeat.
{common.load_summary(loads)}.

{common.table(["model", "bn_mode", "what", "median s", "x gradient", "first call s", f"<= {GOAL}x"], rows)}

Default composition `auto` (double_backward_cached when all first-order graphs fit in graph_cache_gb,
{hd.hvp.DEFAULT_GRAPH_CACHE_GB:g} GiB by default; their estimated size: {graphs}); the default's HVP/gradient
ratio: {default_ratios}.
Goal HVP <= {GOAL}x gradient met by the default: {met};
fastest composition per case: {", ".join(f"{k} {v}" for k, v in best.items())}.
"""


def main():
    args = common.parse_args(
        __doc__,
        repeats=3,
        extra=lambda p: (
            p.add_argument("--depths", default="20,56", help="ResNet depths (default 20,56)"),
            p.add_argument("--deep-batch", type=int, default=64, help="batch size for depths > 20 (default 64)"),
        ),
    )
    if args.quick:
        cases, n_images, batch = [(8, "batch"), (8, "running")], 16, 16
    else:
        depths = [int(d) for d in args.depths.split(",")]
        cases = [(d, m) for d in depths for m in (("batch", "running") if d == depths[0] else ("batch",))]
        n_images, batch = 256, 256
    # deeper nets as the operator's batches of 64: one batch of 256 through ResNet-56 peaked at 18 GB
    # resident (OOM-killed on this shared 23 GB machine; see bench/hvp_memory.py)
    results = [
        measure(d, m, n_images, batch if d <= 20 else min(batch, args.deep_batch), args.repeats) for d, m in cases
    ]
    note = (
        ""
        if args.quick
        else f"\nBN mode 'running' is measured for resnet{cases[0][0]} only, to keep the run "
        "short; the deeper net is measured with the workflow's default 'batch'. Deeper nets use the operator's "
        f"batches of {args.deep_batch} (same 256 images): one batch of 256 through ResNet-56 with every composition "
        "in one process reached 18 GB resident and was OOM-killed on this shared 23 GB machine.\n"
    )
    common.write_results(
        "hvp_vs_grad",
        "1. HVP vs gradient (per composition)",
        report(results) + note,
        {"results": results},
        args,
        "python bench/hvp_vs_grad.py",
    )


if __name__ == "__main__":
    main()
