"""Training throughput (images/s): hessdepth's loop and its switches vs a torchvision DataLoader loop.

Model: ResNet-20 and ResNet-80, width 16, batch 128, SGD as in config.yaml; data: the real CIFAR
subset's 5,000 training images (the same for every variant). Variants, interleaved in every repeat:
- hessdepth: the inner step of hd.train (training._Run.train_step: data resident on the device,
  on-device crop+flip, deterministic CPU kernels, the per-step finite check), with
  TrainConfig defaults, and with channels_last, bf16_autocast, compile each switched on alone;
- torchvision: a plain loop over torch.utils.data.DataLoader(batch 128, shuffle, num_workers=0)
  with RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize on PIL images.
Every variant has its own model and optimizer from the same seed. The first steps are warm-up and
not timed; the first step's time is reported (for compile it is the compilation). The inductor
cache is a fresh temporary directory, so compile time is a cold compile.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import common

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-inductor-")

import numpy as np
import torch
import torch.nn.functional as F

import hessdepth as hd
from hessdepth.data import CIFAR10_MEAN, CIFAR10_STD
from hessdepth.device import deterministic
from hessdepth.training import _Run

SWITCHES = ("channels_last", "bf16_autocast", "compile")


class HessdepthLoop:
    def __init__(self, depth, data, batch, device, **switch):
        cfg = hd.TrainConfig(steps=10**9, batch_size=batch, log_every=10**9, snapshot_every=10**9, **switch)
        self.run = _Run(
            hd.seeded_model("resnet", depth, seed=0),
            data,
            cfg,
            checkpoints={},
            seed=0,
            device=torch.device(device),
            attrs=None,
        )
        self.device = torch.device(device)

    def steps(self, n):
        with deterministic(self.device):
            for _ in range(n):
                if not self.run.train_step():
                    raise RuntimeError("non-finite step in the benchmark")


class TorchvisionLoop:
    def __init__(self, depth, data, batch, device):
        import torchvision.transforms as T
        from PIL import Image
        from torch.utils.data import DataLoader, Dataset

        transform = T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
            ]
        )
        hwc = np.ascontiguousarray(data.train_images.transpose(0, 2, 3, 1))
        labels = data.train_labels

        class Images(Dataset):
            def __len__(self):
                return len(labels)

            def __getitem__(self, i):
                return transform(Image.fromarray(hwc[i])), int(labels[i])

        gen = torch.Generator().manual_seed(0)
        self.loader = DataLoader(Images(), batch_size=batch, shuffle=True, num_workers=0, drop_last=True, generator=gen)
        self.it = iter(self.loader)
        self.device = torch.device(device)
        self.model = hd.seeded_model("resnet", depth, seed=0).to(self.device).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def steps(self, n):
        for _ in range(n):
            try:
                x, y = next(self.it)
            except StopIteration:
                self.it = iter(self.loader)
                x, y = next(self.it)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss.item()


def measure(depth, data, batch, steps, repeats, warmup_steps, device="cpu", compile_ok=True) -> dict:
    loops, errors, first = {}, {}, {}
    makers = {
        "hessdepth (defaults)": lambda: HessdepthLoop(depth, data, batch, device),
        "torchvision DataLoader": lambda: TorchvisionLoop(depth, data, batch, device),
    }
    makers.update(
        {
            f"hessdepth {s}": (lambda s=s: HessdepthLoop(depth, data, batch, device, **{s: True}))
            for s in SWITCHES
            if s != "compile" or compile_ok
        }
    )
    for name, make in makers.items():  # build and warm up; the first step is timed on its own
        try:
            loop = make()
            tic = time.perf_counter()
            loop.steps(1)
            common.sync(device)
            first[name] = time.perf_counter() - tic
            loop.steps(warmup_steps - 1)
            loops[name] = loop
            print(f"  {name}: first step {first[name]:.3g} s", file=sys.stderr, flush=True)
        except Exception as err:  # a switch that fails here is reported, not fatal
            errors[name] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
            print(f"  {name} failed: {errors[name]}", file=sys.stderr)
    print(f"resnet{depth}: {steps} steps x {repeats} repeats per variant", file=sys.stderr)
    res = common.interleaved(
        {n: (lambda lp=lp: lp.steps(steps)) for n, lp in loops.items()}, repeats, warmup=0, device=device
    )
    res["images_per_s"] = {n: steps * batch / t for n, t in res["median"].items()}
    base = "hessdepth (defaults)"
    res["vs_defaults"] = {n: common.median_ratio(res["times"], base, n) for n in loops} if base in loops else {}
    res.update(depth=depth, steps=steps, batch=batch, first_step_s=first, errors=errors, warmup_steps=warmup_steps)
    return res


def report(r) -> str:
    rows = [
        [n, r["images_per_s"][n], r["median"][n] / r["steps"], r["vs_defaults"].get(n, ""), r["first_step_s"][n]]
        for n in r["median"]
    ]
    rows += [[n, "failed", "", "", e] for n, e in r["errors"].items()]
    timed = f"{r['steps']} timed steps per repeat x {len(r['loads'])} repeats = {r['steps'] * len(r['loads'])}"
    return f"""### resnet{r["depth"]}: {timed} per variant (after {r["warmup_steps"]} warm-up steps)

{common.load_summary(r["loads"])}.

{common.table(["variant", "images/s", "s per step", "speed vs defaults", "first step s (compile: compile time)"], rows)}
"""


def main():
    args = common.parse_args(
        __doc__,
        repeats=4,
        extra=lambda p: p.add_argument(
            "--no-compile", action="store_true", help="skip the compile variant (--quick skips it too)"
        ),
    )
    data, _, _, source = common.cifar_images(1)
    if args.quick:
        plan = [(8, 2, 2, 32)]  # depth, steps per repeat, warm-up steps, batch
        data = hd.CifarData(
            data.train_images[:256],
            data.train_labels[:256],
            data.test_images[:10],
            data.test_labels[:10],
            classes=data.classes,
        )
    else:
        plan = [(20, 5, 3, 128), (80, 2, 2, 128)]
    results = []
    for depth, steps, warm, batch in plan:
        reps = args.repeats if depth < 50 else max(2, args.repeats - 1)
        results.append(measure(depth, data, batch, steps, reps, warm, compile_ok=not (args.no_compile or args.quick)))
    defaults = {s: getattr(hd.TrainConfig(), s) for s in SWITCHES}
    verdict = []
    for r in results:
        for s in SWITCHES:
            key = f"hessdepth {s}"
            if key in r["vs_defaults"]:
                verdict.append(f"resnet{r['depth']} {s}: {r['vs_defaults'][key]:.2f}x the defaults' speed")
    body = (
        f"Data: {source}, {len(data.train_labels)} training images; batch {results[0]['batch']}, width 16, CPU. "
        "images/s = steps x batch / median time of a repeat; 'speed vs defaults' = median over repeats of "
        "(defaults' time / variant's time) in the same repeat.\n\n"
        + "\n".join(report(r) for r in results)
        + f"\nDefaults (TrainConfig and config.yaml): {', '.join(f'{k}={v}' for k, v in defaults.items())} -- all off. "
        f"Measured here: {'; '.join(verdict)}. A switch is worth turning on by default only where it is faster "
        "on the machine that trains (these are CPU numbers; on a GPU, channels_last and bf16 usually pay).\n"
        "ResNet-80 gets fewer steps per repeat (2) than ResNet-20 (5) to keep the run short on 2 cores.\n"
    )
    common.write_results(
        "train_throughput",
        "5. Training throughput",
        body,
        {"results": results, "data": source},
        args,
        "python bench/train_throughput.py",
    )


if __name__ == "__main__":
    main()
