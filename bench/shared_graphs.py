"""Probes sharing each batch's first-order graph (issue 15): the uncached Hessian product per
probe-step for k = 1, 2, 4, 8, 10 probes in lockstep, against a gradient, the plain one-probe
product, the vmap lockstep and the cached product, same model and data, one run.

The paper's products run over all 50,000 training images, too many to keep every batch's
first-order graph (the cache), so each product pays a forward pass and a first backward again.
``HessianOperator.matmat`` with composition double_backward builds each batch's graph once for
all k rows and runs one plain second backward per row (hessdepth.hvp._shared_second_backward).
Per probe-step = the matmat's time / k. Goal: <= 2.5x a gradient at k = 8, >= 1.4x faster than
the one-probe uncached product, within 10% of the cached product (the second backward alone).
"""

from __future__ import annotations

import sys

import common
import torch

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.probes import probe_vector
from hessdepth.hvp import gradient_graph, second_backward

GOAL_GRADIENTS, GOAL_SPEEDUP, GOAL_FLOOR = 2.5, 1.4, 1.10
LANCZOS_STEPS = 90  # the paper's: for the memory of k Lanczos bases


def vmap_lockstep(op, V):
    """The lockstep this replaces: one graph per batch, the k tangents through one batched backward."""
    tangents = tuple(t.reshape(len(V), *s) for t, s in zip(V.split(op._sizes, dim=-1), op._shapes))
    with op._mode():
        for x, y in op.batches:
            second_backward(gradient_graph(op._batch_loss(x, y), op._params()), tangents, True)


def measure(depth: int, n_images: int, batch_size: int, ks: list[int], repeats: int, device="cpu") -> dict:
    _, images, labels, source = common.cifar_images(n_images)
    model = hd.seeded_model("resnet", depth, seed=0).to(device)
    batches = fixed_batches(images, labels, batch_size, device)
    uncached = hd.HessianOperator(model, batches, "batch", "double_backward")
    cached = hd.HessianOperator(model, batches, "batch", graph_cache_gb=1e6)  # auto: keeps every graph, sizes them
    assert cached.composition == "double_backward_cached"
    n = uncached.num_params
    V = torch.stack([probe_vector(n, 0, i, device=device) for i in range(max(ks))]).float()
    V = V / V.norm(dim=1, keepdim=True)
    variants = {"gradient": uncached.gradient, "k=1 (one probe)": lambda: uncached.matvec(V[0])}
    variants.update({f"k={k} shared": (lambda k=k: uncached.matmat(V[:k])) for k in ks if k > 1})
    k_vmap = 8 if 8 in ks else max(ks)
    variants[f"k={k_vmap} vmap"] = lambda: vmap_lockstep(uncached, V[:k_vmap])
    variants["cached (second backward only)"] = lambda: cached.matvec(V[0])
    per_call = {name: int(name.split("=")[1].split()[0]) if name.startswith("k=") else 1 for name in variants}
    print(f"resnet{depth}, {n_images} images in batches of {batch_size} on {device}", file=sys.stderr)
    res = common.interleaved(variants, repeats, warmup=1, device=device)
    res["per_probe"] = {name: [t / per_call[name] for t in res["times"][name]] for name in variants}
    times = {**res["per_probe"]}
    res["x_gradient"] = {name: common.median_ratio(times, name, "gradient") for name in variants}
    res["speedup"] = {name: common.median_ratio(times, "k=1 (one probe)", name) for name in variants}
    res["x_cached"] = {name: common.median_ratio(times, name, "cached (second backward only)") for name in variants}
    res.update(
        per_call=per_call,
        **common.case(model, depth, n_images, batch_size, source, device),
        graph_gib_per_batch=cached.graph_bytes / len(batches) / 2**30,
        graph_gib_all=cached.graph_bytes / 2**30,
    )
    return res


def report(results: list[dict]) -> str:
    rows, verdicts = [], []
    for r in results:
        for name, per_call in r["per_call"].items():
            basis = per_call * LANCZOS_STEPS * r["n_params"] * 8 / 2**30 if name.startswith("k=") else 0
            graphs = r["graph_gib_all"] if name.startswith("cached") else r["graph_gib_per_batch"]
            rows.append(
                [
                    f"resnet{r['depth']}",
                    name,
                    r["median"][name] / per_call,
                    r["x_gradient"][name],
                    r["speedup"][name],
                    r["x_cached"][name],
                    f"{graphs:.2f}",
                    f"{basis:.2f}",
                ]
            )
        k8 = "k=8 shared" if "k=8 shared" in r["x_gradient"] else None
        if k8:
            ok = (
                r["x_gradient"][k8] <= GOAL_GRADIENTS,
                r["speedup"][k8] >= GOAL_SPEEDUP,
                r["x_cached"][k8] <= GOAL_FLOOR,
            )
            verdicts.append(
                f"resnet{r['depth']} k=8: {r['x_gradient'][k8]:.2f}x a gradient "
                f"({'met' if ok[0] else 'not met'}), {r['speedup'][k8]:.2f}x faster than one probe "
                f"({'met' if ok[1] else 'not met'}), {r['x_cached'][k8]:.2f}x the cached product "
                f"({'met' if ok[2] else 'not met'})"
            )
    r0 = results[0]
    loads = [load for r in results for load in r["loads"]]
    return f"""Data: {r0["data"]}; per model the images below in batches of {r0["batch_size"]}, bn_mode batch, float32
products, model at its seeded initialisation, cache off except in the 'cached' row. Per probe-step = median over
{len(r0["loads"])} interleaved repeats of the call's time / k (after one warm-up call each). Ratios are medians of
per-repeat ratios: x gradient (goal <= {GOAL_GRADIENTS} at k = 8), speed-up over the one-probe product (goal >=
{GOAL_SPEEDUP}), x the cached product (goal <= {GOAL_FLOOR}). Graphs: first-order graph memory held at once
(estimated from autograd's saved tensors: one batch's uncached, every batch's cached); bases: k Lanczos bases of
{LANCZOS_STEPS} float64 vectors (host memory). {common.load_summary(loads)}.

{
        common.table(
            [
                "model",
                "what",
                "s per probe-step",
                "x gradient",
                "speed-up vs k=1",
                "x cached",
                "graphs GiB",
                "bases GiB",
            ],
            rows,
        )
    }

{chr(10).join(f"- {v}" for v in verdicts)}
"""


def main():
    args = common.parse_args(
        __doc__,
        repeats=3,
        extra=lambda p: (
            p.add_argument("--images", type=int, default=512, help="images per model (default 512)"),
            p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)"),
        ),
    )
    if args.quick:
        cases, n_images, batch = [(8, [1, 2, 4])], 32, 16
    else:
        cases, n_images, batch = [(20, [1, 2, 4, 8, 10]), (56, [1, 8])], args.images, args.batch_size
    results = [measure(d, n_images, batch, ks, args.repeats) for d, ks in cases]
    common.write_results(
        "shared_graphs",
        "Shared graphs: uncached Hessian products per probe-step",
        report(results),
        {"results": results},
        args,
        "python bench/shared_graphs.py",
    )


if __name__ == "__main__":
    main()
