"""Peak CPU memory of one gradient and one HVP per composition (and a lockstep matmat), each in a fresh process.

Why: bench/hvp_vs_grad.py was OOM-killed at 18 GB resident on ResNet-56 with 256 images in one
batch on this 23 GB machine. Each measurement runs in its own subprocess with glibc's mmap
threshold fixed at 128 KiB (MALLOC_MMAP_THRESHOLD_), so freed tensors leave the resident set and
the peak RSS growth over the call (ru_maxrss after - RSS before) is the call's own memory.
Model: seeded ResNet at init; data: the first N real CIFAR-subset images as one batch; bn_mode batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import common

import hessdepth as hd

CHILD = r"""
import json, resource, sys
import torch, hessdepth as hd
sys.path.insert(0, {bench!r})
import common
from hessdepth.data import fixed_batches
from hessdepth.probes import probe_vector
depth, n, comp, k = {depth}, {n}, {comp!r}, {k}
_, images, labels, _ = common.cifar_images(n)
model = hd.seeded_model("resnet", depth, seed=0)
op = hd.HessianOperator(model, fixed_batches(images, labels, n, "cpu"), "batch", comp or "jvp_grad")
V = torch.stack([probe_vector(op.num_params, 0, i) for i in range(k)]).float()
with open("/proc/self/statm") as f:
    before = int(f.read().split()[1]) * resource.getpagesize()
if comp is None:
    op.gradient()
elif k == 1:
    op.matvec(V[0])
else:
    op.matmat(V)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"growth": peak - before}}))
"""


def probe(depth, n, comp, k=1) -> int:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    code = CHILD.format(bench=str(common.BENCH), depth=depth, n=n, comp=comp, k=k)
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"probe {depth} {n} {comp} {k} failed (rc {out.returncode}): {out.stderr[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["growth"]


def main():
    args = common.parse_args(
        __doc__,
        repeats=1,
        extra=lambda p: p.add_argument(
            "--cases", default="20:64,56:32", help="depth:images pairs (default 20:64,56:32)"
        ),
    )
    cases = [(8, 16)] if args.quick else [tuple(int(x) for x in c.split(":")) for c in args.cases.split(",")]
    rows, data = [], {}
    for depth, n in cases:
        for comp, k in [(None, 1)] + [(c, 1) for c in hd.COMPOSITIONS] + [("double_backward", 8)]:
            what = "gradient" if comp is None else comp + (f" matmat k={k}" if k > 1 else "")
            print(f"resnet{depth} {n} images: {what}", file=sys.stderr, flush=True)
            g = probe(depth, n, comp, k)
            data[f"resnet{depth}/{n}/{what}"] = g
            rows.append([f"resnet{depth}", n, what, g / 2**30, g / 2**30 * 256 / n])
    body = f"""Peak resident-memory growth during one call, fresh process per row, one batch of N images, bn_mode batch.
{common.load_summary([common.load()])} (memory does not depend on load).

{common.table(["model", "N images", "call", "GiB", "GiB scaled to 256 images (linear)"], rows)}

double_backward_cached keeps its graphs after the call too (that is its point), so its number is also what
it holds between products. Memory grows linearly with the images in a batch: a HessianOperator with fewer,
smaller batches bounds the peak.
"""
    common.write_results(
        "hvp_memory",
        "1b. Memory of one gradient / HVP per composition",
        body,
        {"bytes": data},
        args,
        "python bench/hvp_memory.py",
    )


if __name__ == "__main__":
    main()
