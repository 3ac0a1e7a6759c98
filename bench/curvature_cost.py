"""Curvature products vs a gradient: Gauss-Newton G v, Hessian H v and a diagonal block of H.

Same model (seeded ResNet at init, seed 0), same data (the first 256 training images of the real
CIFAR subset, one batch, batch-statistics BatchNorm), same run: per repeat the gradient and every
product run interleaved and each ratio to the gradient is taken within the repeat (issue 14).
H v is the default operator's (`auto`: kept first-order graph when it fits) and the uncached
double backward; a block's product is H's, masked (so the five blocks of the curvature stage
cost five Hessian products per probe power).
"""

from __future__ import annotations

import sys

import common

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.probes import probe_vector


def measure(depth: int, n_images: int, batch_size: int, repeats: int, device="cpu") -> dict:
    _, images, labels, source = common.cifar_images(n_images)
    model = hd.seeded_model("resnet", depth, seed=0).to(device)
    batches = fixed_batches(images, labels, batch_size, device)
    hessian = hd.HessianOperator(model, batches, "batch")
    uncached = hd.HessianOperator(model, batches, "batch", "double_backward")
    gauss_newton = hd.GaussNewtonOperator(model, batches, "batch")
    stage2 = hd.block(hessian, hd.resnet_blocks()["stage2"])
    v = probe_vector(hd.count_params(model), 0, 0, device=device).float()
    w = probe_vector(stage2.num_params, 0, 1, device=device).float()
    variants = {
        "gradient": hessian.gradient,
        f"H v ({hessian.composition})": lambda: hessian.matvec(v),
        "H v (double_backward)": lambda: uncached.matvec(v),
        "G v (Gauss-Newton)": lambda: gauss_newton.matvec(v),
        "H_bb v (block stage2)": lambda: stage2.matvec(w),
    }
    print(f"resnet{depth}, {n_images} images on {device}", file=sys.stderr)
    res = common.interleaved(variants, repeats, warmup=1, device=device)
    res["ratio"] = {name: common.median_ratio(res["times"], name, "gradient") for name in variants}
    res.update(common.case(model, depth, n_images, batch_size, source, device))
    return res


def report(results: list[dict]) -> str:
    rows = [
        [f"resnet{r['depth']}", name, r["median"][name], r["ratio"][name], r["first"][name]]
        for r in results
        for name in r["median"]
    ]
    r0 = results[0]
    loads = [load for r in results for load in r["loads"]]
    gn = ", ".join(f"resnet{r['depth']} {r['ratio']['G v (Gauss-Newton)']:.2f}x" for r in results)
    return f"""Data: {r0["data"]}, {r0["n_images"]} images as batches of {r0["batch_size"]} on {r0["device"]}; model at
its seeded initialisation; float32 products; bn_mode batch. Time = median over {len(r0["loads"])} interleaved repeats
after one warm-up call each ('first call'); ratio = median over repeats of product/gradient in the same repeat.
{common.load_summary(loads)}.

{common.table(["model", "what", "median s", "x gradient", "first call s"], rows)}

G v costs {gn} a gradient (a vjp and a jvp through the net, no second derivative). The Gauss-Newton stage
runs 2 H v and 2 G v per probe; the block stage 2 masked H v per block and probe.
"""


def main():
    args = common.parse_args(
        __doc__,
        repeats=5,
        extra=lambda p: p.add_argument("--depths", default="20,56", help="ResNet depths (default 20,56)"),
    )
    if args.quick:
        cases, n_images = [8], 16
    else:
        cases, n_images = [int(d) for d in args.depths.split(",")], 256
    # deeper nets in the operator's batches of 64, as bench/hvp_vs_grad.py (memory)
    results = [measure(d, n_images, n_images if d <= 20 else 64, args.repeats) for d in cases]
    common.write_results(
        "curvature_cost",
        "Curvature products vs gradient (G v, H v, block)",
        report(results),
        {"results": results},
        args,
        "python bench/curvature_cost.py",
    )


if __name__ == "__main__":
    main()
