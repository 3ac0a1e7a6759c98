"""Lockstep probes: k Lanczos (and Hutchinson) probes sharing each pass over the data vs one at a time.

Same model (seeded ResNet-20 at init), same data (first 256 images of the real CIFAR subset, one
batch of 256), default composition, bn_mode "batch". Lanczos: hd.slq(op, iterations=s, probes=k,
lockstep=k) -- s lockstep steps, each one op.matmat over k probes plus the reorthogonalisation;
time per probe-step = time / (k s). Hutchinson: hd.hutchinson_moments(op, probes=k, lockstep=k) --
two matmat passes; time per probe-product = time / (2k). k = 1 is one probe at a time. All
variants interleaved in every repeat. Runs on the CPU, and also on CUDA when it is available.
"""

from __future__ import annotations

import statistics
import sys

import common

import torch

import hessdepth as hd
from hessdepth.data import fixed_batches


def measure(
    device,
    depth: int,
    n: int,
    ks: list[int],
    hutch_ks: list[int],
    steps: int,
    repeats: int,
    batch_size: int | None = None,
) -> dict:
    _, images, labels, source = common.cifar_images(n)
    model = hd.seeded_model("resnet", depth, seed=0).to(device)
    op = hd.HessianOperator(model, fixed_batches(images, labels, batch_size or n, device), "batch")
    # warm-up on 8 images (first-call costs of vmap and the kernels) so that the timed repeats need none
    warm = hd.HessianOperator(model, fixed_batches(images[:8], labels[:8], 8, device), "batch")
    for k in sorted(set(ks) | set(hutch_ks)):
        hd.slq(warm, iterations=2, probes=k, lockstep=k)
    hd.slq(op, iterations=1, probes=1)  # builds op's kept first-order graph, so that no timed variant pays for it
    variants = {}
    for k in ks:
        variants[f"lanczos k={k}"] = lambda k=k: hd.slq(op, iterations=steps, probes=k, lockstep=k)
    for k in hutch_ks:
        variants[f"hutchinson k={k}"] = lambda k=k: hd.hutchinson_moments(op, probes=k, lockstep=k)
    print(f"resnet{depth}, {n} images on {device}", file=sys.stderr)
    res = common.interleaved(variants, repeats, warmup=0, device=device)
    per = {
        name: [t / (int(name.split("=")[1]) * (steps if name.startswith("lanczos") else 2)) for t in ts]
        for name, ts in res["times"].items()
    }
    res["per_probe_step"] = {name: statistics.median(p) for name, p in per.items()}
    res["vs_one_at_a_time"] = {}
    for name in variants:
        base = "lanczos k=1" if name.startswith("lanczos") else "hutchinson k=1"
        if base in per:
            res["vs_one_at_a_time"][name] = common.median_ratio(per, base, name)
    res.update(composition=op.composition, device=str(device), depth=depth, n_images=n, steps=steps, data=source)
    return res


def report(res: dict) -> str:
    rows = [
        [name, res["median"][name], res["per_probe_step"][name], res["vs_one_at_a_time"].get(name, "")]
        for name in res["times"]
    ]
    return f"""### {res["device"]}

{res["n_images"]} images as one batch, resnet{res["depth"]}, `{res["composition"]}`, bn_mode batch; Lanczos runs
{res["steps"]} lockstep step(s) per call. Median over {len(res["loads"])} interleaved repeats
(warm-up: every k once on 8 images, and one product
with the timed operator, which builds its kept graph when it keeps one).
{common.load_summary(res["loads"])}.

{common.table(["variant", "median s per call", "s per probe-step", "speed-up per probe-step vs k=1"], rows)}
"""


def main():
    args = common.parse_args(
        __doc__,
        repeats=2,
        extra=lambda p: (
            p.add_argument("--ks", default="1,2,4,8", help="Lanczos lockstep sizes (default 1,2,4,8)"),
            p.add_argument("--hutchinson-ks", default="1,8", help="Hutchinson lockstep sizes (default 1,8)"),
            p.add_argument("--steps", type=int, default=1, help="Lanczos steps per call (default 1)"),
        ),
    )
    ks = [int(k) for k in args.ks.split(",")]
    hks = [int(k) for k in args.hutchinson_ks.split(",")] if args.hutchinson_ks else []
    depth, n = (8, 16) if args.quick else (20, 256)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = [measure(d, depth, n, ks, hks, args.steps, args.repeats) for d in devices]
    cuda_note = (
        ""
        if torch.cuda.is_available()
        else "\nCUDA not available on this machine: CPU only (the CUDA path runs where it is).\n"
    )
    body = (
        f"Data: {results[0]['data']}.\n\n"
        + "\n".join(report(r) for r in results)
        + cuda_note
        + "\nOne Lanczos step of k lockstep probes is one op.matmat over k rows (vmap over the tangents), so "
        "slq(lockstep=k) and hutchinson_moments(lockstep=k) share the same pass; 'speed-up' > 1 means the shared "
        "pass is cheaper per probe than one probe at a time.\n"
    )
    common.write_results(
        "lockstep",
        "3. Lockstep probes (lockstep=k) vs one probe at a time",
        body,
        {"results": results},
        args,
        "python bench/lockstep.py",
    )


if __name__ == "__main__":
    main()
