"""CPU allocator: glibc's defaults vs hd.keep_freed_cpu_memory(), each in processes of its own.

The setting is process-wide, so it cannot be interleaved inside one process: child processes
alternate (default, kept, default, kept, ...). Each child times, after one warm-up call each and
interleaved over its repeats, a gradient, an HVP without and with the graph cache (ResNet-20 at
init, the first 256 images of the real CIFAR subset as one batch, bn_mode batch) and one SGD
training step (batch 128, train-mode BN), and reports its peak resident memory.
Ratios are default time / kept time of children run back to back.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import common

import torch
import torch.nn.functional as F

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.probes import probe_vector

SETTINGS = {"default": {"HESSDEPTH_DEFAULT_MALLOC": "1"}, "kept": {}}


def child(n: int, repeats: int) -> dict:
    import resource

    _, images, labels, _ = common.cifar_images(n)
    model = hd.seeded_model("resnet", 20, seed=0)
    batches = fixed_batches(images, labels, n, "cpu")
    uncached = hd.HessianOperator(model, batches, "batch", "double_backward")
    cached = hd.HessianOperator(model, batches, "batch", "double_backward_cached")
    v = probe_vector(uncached.num_params, 0, 0)
    v = (v / v.norm()).float()
    trained = hd.seeded_model("resnet", 20, seed=0).train()
    opt = torch.optim.SGD(trained.parameters(), lr=0.01, momentum=0.9)
    x, y = batches[0][0][:128], batches[0][1][:128]

    def sgd_step():
        opt.zero_grad()
        F.cross_entropy(trained(x), y).backward()
        opt.step()

    res = common.interleaved(
        {
            "gradient": uncached.gradient,
            "HVP double_backward": lambda: uncached.matvec(v),
            "HVP double_backward_cached": lambda: cached.matvec(v),
            "SGD step (128 images)": sgd_step,
        },
        repeats,
        warmup=1,
        log=False,
    )
    res["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    res["allocator"] = common.ALLOCATOR
    return res


def main():
    args = common.parse_args(
        __doc__,
        repeats=3,
        extra=lambda p: (
            p.add_argument("--rounds", type=int, default=2, help="child pairs (default 2)"),
            p.add_argument("--child", action="store_true", help=argparse_hidden),
        ),
    )
    n = 32 if args.quick else 256
    if args.child:
        print(json.dumps(child(n, args.repeats)))
        return
    runs = {name: [] for name in SETTINGS}
    for r in range(1 if args.quick else args.rounds):
        for name, env in SETTINGS.items():
            print(f"round {r + 1}: {name} allocator", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--child", "--repeats", str(args.repeats)] + (
                ["--quick"] if args.quick else []
            )
            out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    what = list(runs["kept"][0]["median"])
    rows = []
    for w in what:
        default = [c["median"][w] for c in runs["default"]]
        kept = [c["median"][w] for c in runs["kept"]]
        ratios = [d / k for d, k in zip(default, kept)]
        rows.append([w, statistics.median(default), statistics.median(kept), statistics.median(ratios)])
    rss = [[name, statistics.median(c["peak_rss_gib"] for c in cs)] for name, cs in runs.items()]
    loads = [avg for cs in runs.values() for c in cs for avg in c["loads"]]
    body = f"""ResNet-20 at init, {n} real CIFAR images (one batch), bn_mode batch, CPU; SGD step on the first 128.
{len(runs["kept"])} round(s) of one child process per allocator (default first), each the median of {args.repeats}
interleaved repeats after a warm-up call. {common.load_summary(loads)}.
'default': glibc as it comes; 'kept': hd.keep_freed_cpu_memory() (mallopt: no mmap, trim threshold 2 GiB),
which every workflow job and every other benchmark here uses.

{common.table(["what", "default s", "kept s", "speed-up (median of default/kept per round)"], rows)}

{common.table(["allocator", "peak resident GiB of the child"], rss)}
"""
    common.write_results(
        "cpu_allocator",
        "7. CPU allocator (glibc defaults vs freed memory kept)",
        body,
        {"runs": runs, "n_images": n},
        args,
        "python bench/cpu_allocator.py",
    )


argparse_hidden = "internal: run one measuring child and print JSON"

if __name__ == "__main__":
    main()
