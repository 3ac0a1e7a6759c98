"""Lanczos bookkeeping (reorthogonalisation etc.) as a fraction of SLQ time at ResNet-110 size, m = 90.

Without paying 90 real HVPs: hd.slq runs on a cheap diagonal operator of ResNet-110's dimension
(1,727,962; float32 products like the real operator, float64 basis), so its time is all Lanczos
(minus the 90 trivial d*v products, timed separately and subtracted). One real ResNet-110 HVP
(default composition, bn_mode batch, seeded init) is timed over 32 and 64 CIFAR images and
extrapolated to 256 images and to the paper's 50,000. Fraction = overhead / (overhead + 90 HVP).
Goal (issue 6): <= 5%. Memory: SLQResult.basis_bytes, checked with ru_maxrss and tracemalloc.
"""

from __future__ import annotations

import resource
import sys
import tracemalloc

import common

import torch

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.probes import probe_vector

GOAL = 0.05


class DiagonalOperator:
    """H = diag(d): the cheapest operator of a given dimension (matvec = d * v)."""

    def __init__(self, n: int, dtype=torch.float32, device="cpu"):
        self.num_params, self.dtype, self.device = n, dtype, torch.device(device)
        self.d = torch.linspace(-1.0, 10.0, n, dtype=dtype, device=device)

    def matvec(self, v):
        return self.d * v

    def matmat(self, V):
        return V * self.d


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def main():
    args = common.parse_args(__doc__, repeats=3)
    depth, m, sizes = (8, 10, (8, 16)) if args.quick else (110, 90, (32, 64))
    n_params = hd.count_params(hd.build_model("resnet", depth))
    diag = DiagonalOperator(n_params)

    # memory first, while the process peak is still low
    rss0 = maxrss_bytes()
    tracemalloc.start()
    result = hd.slq(diag, iterations=m, probes=1)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = maxrss_bytes() - rss0
    basis_bytes = result.basis_bytes
    del result

    _, images, labels, source = common.cifar_images(max(sizes))
    model = hd.seeded_model("resnet", depth, seed=0)
    ops = {s: hd.HessianOperator(model, fixed_batches(images[:s], labels[:s], s, "cpu"), "batch") for s in sizes}
    v = probe_vector(n_params, 0, 0)
    v = (v / v.norm()).float()
    w = v.clone()

    def diag_products():
        for _ in range(m):
            diag.matvec(w)

    variants = {
        f"slq diagonal m={m}": lambda: hd.slq(diag, iterations=m, probes=1),
        f"{m} diagonal products": diag_products,
    }
    variants.update({f"HVP resnet{depth} {s} images": (lambda op=op: op.matvec(v)) for s, op in ops.items()})
    print(f"n = {n_params}, m = {m}", file=sys.stderr)
    res = common.interleaved(variants, args.repeats, warmup=1)
    med = res["median"]
    overhead = med[f"slq diagonal m={m}"] - med[f"{m} diagonal products"]
    s1, s2 = sizes
    t1, t2 = med[f"HVP resnet{depth} {s1} images"], med[f"HVP resnet{depth} {s2} images"]
    slope = max((t2 - t1) / (s2 - s1), 0.0)
    intercept = max(t1 - slope * s1, 0.0)
    rows, fractions = [], []
    for target in (256, 1000, 50_000):
        prop = t2 * target / s2  # proportional to the images
        fit = intercept + slope * target  # marginal cost per image + fixed cost
        for how, hvp in (("proportional", prop), ("linear fit", fit)):
            frac = overhead / (overhead + m * hvp) if hvp > 0 else float("nan")
            fractions.append((target, frac))
            rows.append([target, how, hvp, m * hvp, frac * 100])
    worst = max(f for t, f in fractions if t == 256)
    body = f"""Dimension n = {n_params:,} (resnet{depth}), m = {m} Lanczos steps, one probe (lockstep=1).
Lanczos = hd.slq as
the workflow calls it (float64 basis, full reorthogonalisation twice per step) on a diagonal operator; HVP =
HessianOperator(`{ops[s2].composition}`, bn_mode batch) on the first {s1} / {s2} images of {source}, one batch.
Median over {args.repeats} interleaved repeats after one warm-up call each. {common.load_summary(res["loads"])}.

{common.table(["variant", "median s"], [[k, med[k]] for k in variants])}

Lanczos overhead for m = {m}: {overhead:.3g} s (slq on the diagonal minus its {m} d*v products), i.e.
{overhead / m * 1000:.3g} ms per step on average.

{common.table(["HVP over images", "extrapolation", "s per HVP", f"{m} HVPs s", "overhead % of SLQ"], rows)}

Goal overhead <= {GOAL:.0%} of SLQ time: {"met" if worst <= GOAL else "NOT met"} at 256 images
(worst of the two extrapolations: {worst:.2%}); larger samples only lower the fraction.

Memory of the basis: SLQResult.basis_bytes = {basis_bytes:,} B (= m n 8 = {m * n_params * 8:,})
({basis_bytes / 2**30:.2f} GiB) per probe in a lockstep group
(lockstep=k holds k times that). Check: the process peak RSS (ru_maxrss) grew by {rss_growth / 2**30:.2f} GiB during one
slq run; tracemalloc's peak was {traced_peak / 2**20:.1f} MiB -- tracemalloc sees only Python's allocator, not
torch's tensor memory, so it cannot see the basis.
"""
    common.write_results(
        "lanczos_overhead",
        "4. Lanczos overhead at ResNet-110 size",
        body,
        {
            "results": res,
            "overhead_s": overhead,
            "n_params": n_params,
            "m": m,
            "depth": depth,
            "hvp_s": {str(s): med[f"HVP resnet{depth} {s} images"] for s in sizes},
            "composition": ops[s2].composition,
            "hvp_fit": {"intercept_s": intercept, "per_image_s": slope},
            "basis_bytes": basis_bytes,
            "rss_growth_bytes": rss_growth,
            "tracemalloc_peak_bytes": traced_peak,
            "data": source,
        },
        args,
        "python bench/lanczos_overhead.py",
    )


if __name__ == "__main__":
    main()
