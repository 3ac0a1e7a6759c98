"""What one Hessian-vector product costs, part by part, and the speed candidates of issue 22.

One run, the same model, batches and tangent for every variant (ResNet-20 and ResNet-56 at
width 16, seeded initialisation, 128 real CIFAR-10 images in batches of 64, BatchNorm with
batch statistics, float32): a gradient; the batches' first-order graphs alone (forward and
create_graph backward); hessdepth's product with the graphs kept (the second backward alone) and
without (uncached, one probe), each also in channels_last; the per-probe product of 3 probes in
lockstep (what the SLQ default runs uncached); and the product the peers compute, a plain
autograd double backward through torch's own BatchNorm derivative. ``torch.compile`` of the
batch loss is tried once and its outcome recorded.

The ratio of the peers' product to hessdepth's bounds how much faster hessdepth can be on work
made of products (bench/peers.py): a product cannot cost less than its second backward.
"""

from __future__ import annotations

import statistics
import sys

import common
import torch

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.hvp import gradient_graph
from hessdepth.probes import probe_vector

LOCKSTEP = 3


class TorchBatchNormHessian(hd.HessianOperator):
    """Plain double backward through torch's own BatchNorm derivative: the peers' product."""

    fast_bn = False


def compile_outcome() -> str:
    """What torch.compile does with a second backward through a compiled model."""
    model = hd.seeded_model("resnet", 8, seed=0)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    params = list(model.parameters())
    try:
        loss = torch.nn.functional.cross_entropy(torch.compile(model)(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        torch.autograd.grad(grads, params, [torch.ones_like(p) for p in params])
    except Exception as err:  # the refusal is the result
        return f"refused: {type(err).__name__}: {err}"
    return "ran"


def operators(depth: int, batches: list, channels_last: bool) -> dict:
    model = hd.seeded_model("resnet", depth, seed=0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    return {
        "cached": hd.HessianOperator(model, batches, "batch", graph_cache_gb=1e6),
        "uncached": hd.HessianOperator(model, batches, "batch", "double_backward"),
        "torch_bn": TorchBatchNormHessian(model, batches, "batch", "double_backward"),
    }


def first_order_graphs(op) -> None:
    with op._mode():
        for x, y in op.batches:
            gradient_graph(op._batch_loss(x, y), op._params())


def measure(depth: int, n_images: int, batch_size: int, repeats: int) -> dict:
    _, images, labels, source = common.cifar_images(n_images)
    batches = fixed_batches(images, labels, batch_size, "cpu")
    ops, cl = operators(depth, batches, False), operators(depth, batches, True)
    assert ops["cached"].composition == "double_backward_cached"
    n = ops["cached"].num_params
    V = torch.stack([probe_vector(n, 0, i) for i in range(LOCKSTEP)]).float()
    V = V / V.norm(dim=1, keepdim=True)
    variants = {
        "gradient": ops["uncached"].gradient,
        "first-order graphs alone": lambda: first_order_graphs(ops["uncached"]),
        "product, graphs kept (default)": lambda: ops["cached"].matvec(V[0]),
        "product, graphs kept, channels_last": lambda: cl["cached"].matvec(V[0]),
        "product, uncached, one probe": lambda: ops["uncached"].matvec(V[0]),
        "product, uncached, channels_last": lambda: cl["uncached"].matvec(V[0]),
        f"product, uncached, per probe of {LOCKSTEP} in lockstep": lambda: ops["uncached"].matmat(V),
        "plain double backward, torch's BN (the peers')": lambda: ops["torch_bn"].matvec(V[0]),
    }
    per_call = {name: LOCKSTEP if "lockstep" in name else 1 for name in variants}
    print(f"resnet{depth}, {n_images} images in batches of {batch_size}", file=sys.stderr)
    res = common.interleaved(variants, repeats, warmup=1)
    times = {name: [t / per_call[name] for t in res["times"][name]] for name in variants}
    res.update(
        per_product=times,
        x_gradient={name: common.median_ratio(times, name, "gradient") for name in variants},
        peers_over={
            name: common.median_ratio(times, "plain double backward, torch's BN (the peers')", name)
            for name in variants
        },  # fmt: skip
        **common.case(ops["cached"].model, depth, n_images, batch_size, source, "cpu"),
    )
    return res


def report(results: list[dict], compiled: str) -> str:
    rows = [
        [f"resnet{r['depth']}", name, statistics.median(times), r["x_gradient"][name], r["peers_over"][name]]
        for r in results
        for name, times in r["per_product"].items()
    ]
    bounds = "; ".join(
        f"resnet{r['depth']}: the peers' product over hessdepth's kept-graph product "
        f"{r['peers_over']['product, graphs kept (default)']:.2f}x, over the uncached per-probe product of "
        f"{LOCKSTEP} in lockstep {r['peers_over'][f'product, uncached, per probe of {LOCKSTEP} in lockstep']:.2f}x"
        for r in results
    )
    r0 = results[0]
    loads = [load for r in results for load in r["loads"]]
    return f"""Data: {r0["data"]}, {r0["n_images"]} images in batches of {r0["batch_size"]}; model at its seeded
initialisation, bn_mode batch, float32. Seconds per product (per probe for the lockstep row) = median over
{len(r0["loads"])} interleaved repeats after one warm-up call each; ratios are medians of per-repeat ratios.
'x gradient': the variant over a gradient; 'peers' product / this': the plain double backward through
torch's BatchNorm derivative (what hessian-eigenthings and PyHessian compute per product) over the variant.
{common.load_summary(loads)}.

{common.table(["model", "variant", "s per product", "x gradient", "peers' product / this"], rows)}

Bound on work made of products (bench/peers.py): {bounds}. A tool that computes the exact
product by reverse-over-reverse pays at least the second backward per product; hessdepth pays
little more (the graphs kept, or shared by the lockstep probes), the peers pay the first-order
graph again every product.

torch.compile of the model, then a second backward: {compiled}
"""


def main():
    args = common.parse_args(__doc__, repeats=3)
    depths, n_images, batch = ([8], 32, 16) if args.quick else ([20, 56], 128, 64)
    results = [measure(d, n_images, batch, args.repeats) for d in depths]
    compiled = compile_outcome()
    common.write_results(
        "product_options",
        "Parts of one Hessian-vector product, and the speed candidates (channels_last, torch.compile)",
        report(results, compiled),
        {"results": results, "torch_compile": compiled},
        args,
        "python bench/product_options.py",
    )


if __name__ == "__main__":
    main()
