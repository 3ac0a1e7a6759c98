"""Power study of the CPU evidence preset: where the spread of log-kurtosis and asinh-skewness comes from.

For a simple and a ResNet net at two depths (the preset's shallowest and deepest), at the first
checkpoint of a finished `make evidence` run (half 0), every seed's Hessian is taken on two
independent class-balanced image subsamples of the preset's size (subset seeds 0, the run's own
moments.h5, and 1, computed here with independent probes), each with the preset's number of
Hutchinson probes. A nested random-effects split of log(statistic) follows:

    x[seed, subsample] = mu + seed effect + subsample effect + probe noise
    (x: log kurtosis, or asinh skewness, the scales the summary averages them on)
    probe    : bootstrap variance over the probes of one (seed, subsample), averaged
    subsample: mean over seeds of (x[s, 0] - x[s, 1])^2 / 2, minus the probe part
    seed     : variance over seeds of the subsample mean, minus (subsample + probe) / 2

(negative estimates are set to 0). The same split is made of the paired log-ratio
x(simple) - x(ResNet) at each depth (same seed, same images), the quantity finding 3 is judged on.
From the parts and the run's measured job times, the 95% half-width of a mean over seeds is
projected for the preset and with each knob doubled, per CPU-second spent. The subsample part
is assumed to shrink as 1/(Hessian images), the probe part as 1/probes. Lanczos steps do not
enter: quadrature moments up to 4 are exact from 3 steps on, so steps buy density resolution only.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import common

import h5py
import numpy as np
import torch
import yaml
from scipy import stats as sps

import hessdepth as hd
from hessdepth.workflow import checkpoint_operator
from hessdepth.moments import _stats
from hessdepth.statistics import SCALES
from hessdepth.summary import scale_of

ROOT = common.BENCH.parent
STATS = ("skewness", "kurtosis")


def probe_stats(values: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """asinh(skewness) and log(kurtosis) of the probe-averaged moments (the scales the summary
    averages them on), and their bootstrap variance over the probes."""
    boot = values[np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))].mean(1)
    out = {}
    for i, name in ((2, "skewness"), (3, "kurtosis")):
        forward = SCALES[scale_of(name)][0]
        point = forward(_stats(*values.mean(0))[i])
        b = forward(np.asarray(_stats(*boot.T)[i]))
        out[name] = (float(point), float(np.var(b[np.isfinite(b)], ddof=1)))
    return out


def split(x: np.ndarray, probe_var: np.ndarray) -> dict:
    """Variance parts of x[seed, subsample] (2 subsamples), from the probe variances beside it."""
    probe = float(np.nanmean(probe_var))
    sub = max(0.0, float(np.nanmean((x[:, 0] - x[:, 1]) ** 2) / 2) - probe)
    seed = max(0.0, float(np.var(x.mean(1), ddof=1)) - (sub + probe) / 2)
    return {"seed": seed, "subsample": sub, "probe": probe, "mean": float(np.nanmean(x))}


def half_width(parts: dict, seeds: int, probes_ratio: float = 1.0, samples_ratio: float = 1.0) -> float:
    var = parts["seed"] + parts["subsample"] / samples_ratio + parts["probe"] / probes_ratio
    return float(sps.t.ppf(0.975, seeds - 1) * math.sqrt(var / seeds))


def run_moments_values(run, model: str, seed: int, step: int, preset: dict) -> np.ndarray | None:
    """The run's Hutchinson probe values of one checkpoint (image subsample 0), if made as here."""
    path = run / f"results/cifar_cpu/hessian/{model}/seed{seed}/step{step}/moments.h5"
    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        return f["probe_values"][()] if int(f.attrs["hessian_samples"]) == preset["hessian"]["samples"] else None


def wait_for(path: Path, poll: float = 30.0) -> None:
    """Wait for a run still in progress to write ``path`` (the study may start before it ends)."""
    while not path.exists():
        print(f"waiting for {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}", flush=True)
        time.sleep(poll)


def job_seconds(run, kind: str, model: str, seeds, steps=(None,)) -> float:
    """Median job time (s) of the run's ``kind`` jobs for ``model`` over seeds and steps that finished."""
    times = []
    for seed in seeds:
        for step in steps:
            tsv = run / f"benchmarks/cifar10/{kind}/{model}_seed{seed}{'' if step is None else f'_step{step}'}.tsv"
            if tsv.exists():
                times.append(float(tsv.read_text().splitlines()[-1].split("\t")[0]))
    return float(np.median(times)) if times else float("nan")


def main() -> None:
    def extra(p):
        p.add_argument("--run", default=str(ROOT / "runs/cifar_cpu/half0"), help="a finished run of the preset")
        p.add_argument("--preset", default=str(ROOT / "config/cifar_cpu.yaml"))
        p.add_argument(
            "--render-only", action="store_true", help="rewrite the tables from bench/results/evidence_power.json"
        )

    args = common.parse_args(__doc__, repeats=1, extra=extra)
    if args.render_only:
        stored = common.read_result("evidence_power")
        write({k: v for k, v in stored.items() if k in ("parts", "cost", "meta")}, args)
        return
    run = Path(args.run)
    preset = yaml.safe_load(Path(args.preset).read_text())
    depths = [min(preset["models"]["depths"]), max(preset["models"]["depths"])]
    seeds = preset["models"]["seeds"]
    step = min(preset["train"]["checkpoints"])
    samples, probes = preset["hessian"]["samples"], preset["moments"]["probes"]
    preset_seed = 1  # config.yaml's moments.seed, which the preset keeps
    if args.quick:
        samples, probes = 20, 3
    torch.set_num_threads(1)
    data = run / "results/cifar_cpu/data.h5"
    x = {}  # (model, stat) -> array [seed, subsample]; v: bootstrap probe variances
    v = {}
    hvp_seconds = {}
    for depth in depths:
        for arch in ("simple", "resnet"):
            model = hd.model_id(arch, depth)
            for si, seed in enumerate(seeds):
                for u in (0, 1):
                    values = run_moments_values(run, model, seed, step, preset) if u == 0 and not args.quick else None
                    if values is None:  # the run's own moments.h5 is subsample 0; subsample 1 is computed here
                        ckpt = run / f"results/cifar_cpu/train/{model}/seed{seed}/step{step}.h5"
                        wait_for(ckpt)
                        op, _ = checkpoint_operator(
                            ckpt,
                            data,
                            samples=samples,
                            subset_seed=u,
                            batch_size=samples // 2,
                            bn_mode="batch",
                            dtype="float32",
                            device="cpu",
                            graph_cache_gb=4,
                        )
                        # other probes than the run's, so that probe noise is independent between subsamples
                        res = hd.hutchinson_moments(op, probes=probes, seed=preset_seed + 1 + u)
                        hvp_seconds.setdefault(model, []).append(float(np.median(res.seconds)) / 2)
                        values = res.probe_values
                    for stat, (value, var) in probe_stats(values).items():
                        x.setdefault((model, stat), np.full((len(seeds), 2), np.nan))[si, u] = value
                        v.setdefault((model, stat), np.full((len(seeds), 2), np.nan))[si, u] = var
                    print(
                        f"{model} seed {seed} subsample {u}: log kurtosis {x[model, 'kurtosis'][si, u]:.3f}", flush=True
                    )
    parts = {}
    for (model, stat), values in x.items():
        parts[model, stat] = split(values, v[model, stat])
    for depth in depths:
        s, r = hd.model_id("simple", depth), hd.model_id("resnet", depth)
        for stat in STATS:
            parts[f"simple{depth} - resnet{depth}", stat] = split(x[s, stat] - x[r, stat], v[s, stat] + v[r, stat])

    # costs per model and checkpoint, CPU-seconds (one thread), from the run's job times
    cost = {}
    for depth in depths:
        for arch in ("simple", "resnet"):
            model = hd.model_id(arch, depth)
            train = job_seconds(run, "train", model, seeds)
            hessian = sum(
                job_seconds(run, k, model, seeds, preset["train"]["checkpoints"]) for k in ("lanczos", "moments")
            )
            cost[model] = dict(
                train=float(train), hessian_per_step=float(hessian), hvp=float(np.median(hvp_seconds[model]))
            )
    data_out = {
        "parts": {f"{name}|{stat}": p for (name, stat), p in parts.items()},
        "cost": cost,
        "meta": dict(run=run.name, step=step, depths=depths, seeds=seeds, samples=samples, probes=probes),
    }
    write(data_out, args)


def render(parts: dict, cost: dict, meta: dict) -> str:
    """The tables: variance parts per model and pair, and what each knob buys per CPU-second."""
    n, probes, samples, depths = len(meta["seeds"]), meta["probes"], meta["samples"], meta["depths"]
    rows_parts, rows_knobs = [], []
    for (name, stat), p in parts.items():
        total = p["seed"] + p["subsample"] + p["probe"]
        rows_parts.append(
            [
                name,
                stat,
                f"{p['mean']:.2f}",
                *(f"{p[k]:.4f} ({p[k] / total:.0%})" if total else "0" for k in ("seed", "subsample", "probe")),
                f"{half_width(p, n):.2f}",
            ]
        )
    for depth in depths:
        pair = f"simple{depth} - resnet{depth}"
        models = [f"{a}{depth}" for a in ("simple", "resnet")]
        per_seed = sum(cost[m]["train"] + 2 * cost[m]["hessian_per_step"] for m in models)
        per_probe = sum(2 * cost[m]["hvp"] * 2 for m in models)  # 2 products, 2 checkpoints
        hessian = sum(2 * cost[m]["hessian_per_step"] for m in models)
        for stat in STATS:
            p = parts[pair, stat]
            now = half_width(p, n)
            knobs = [
                (f"seeds {n} -> {2 * n}", half_width(p, 2 * n), n * per_seed),
                (
                    f"Hutchinson probes {probes} -> {2 * probes}",
                    half_width(p, n, probes_ratio=2),
                    n * probes * per_probe,
                ),
                (f"Hessian images {samples} -> {2 * samples}", half_width(p, n, samples_ratio=2), n * hessian),
            ]
            for label, hw, seconds in knobs:
                gain = (now - hw) / now
                rows_knobs.append(
                    [
                        pair,
                        stat,
                        label,
                        f"{now:.3f} -> {hw:.3f}",
                        f"{gain:.0%}",
                        f"{seconds:,.0f}",
                        f"{100 * gain / (seconds / 1000):.1f}%",
                    ]
                )
            need = math.inf
            if p["mean"] and (p["seed"] + p["subsample"] + p["probe"]) > 0:
                need = next((k for k in range(2, 1000) if half_width(p, k) < abs(p["mean"])), math.inf)
            rows_knobs.append(
                [pair, stat, "seeds for a 95% interval that excludes 0 at this mean", "", "", f"{need} seeds", ""]
            )
    return (
        f"Run: `runs/cifar_cpu/{meta['run']}` (config/cifar_cpu.yaml), step {meta['step']}; depths {depths}; "
        f"seeds {meta['seeds']}; {samples} Hessian images x 2 independent subsamples; {probes} Hutchinson "
        "probes each.\n\n"
        "### Variance of log kurtosis and asinh skewness, by source\n\n"
        + common.table(
            [
                "model or pair",
                "statistic",
                "mean (log / asinh)",
                "seed",
                "image subsample",
                "probes",
                f"95% half-width, {n} seeds",
            ],
            rows_parts,
        )
        + "\n\nThe last column is the half-width of the 95% t-interval of the mean over "
        f"{n} seeds ({n - 1} d.f.) with the preset's probes and images, in log (kurtosis) or asinh "
        "(skewness) units: 0.69 is a factor of 2 either way. With three seeds each part is itself "
        "rough (a part estimated below 0 is set to 0).\n\n"
        "### What each knob buys for the paired comparison (finding 3)\n\n"
        "Half-width of the 95% interval of the mean paired difference simple - ResNet over seeds at one "
        "depth; cost = CPU-seconds added for the pair at both checkpoints (measured job times of the run; "
        "a doubled Hessian sample doubles the Hessian jobs). Lanczos steps: no effect on the moments "
        "(exact from 3 steps). Training steps: they change the quantity measured (the checkpoints move "
        "with the schedule), not its noise.\n\n"
        + common.table(
            ["pair", "statistic", "knob", "half-width (log / asinh)", "shrink", "CPU-s", "shrink per 1000 CPU-s"],
            rows_knobs,
        )
        + "\n\nCosts (median CPU-s per model, one thread; the run shared its 2 cores with other work for part of "
        "the time, so some job times are inflated, up to about 2x): "
        + "; ".join(
            f"{m}: train {c['train']:.0f}, Hessian jobs {c['hessian_per_step']:.0f} per checkpoint, HVP {c['hvp']:.2f}"
            for m, c in cost.items()
        )
        + ".\n"
    )


def write(data_out: dict, args) -> None:
    parts = {tuple(key.split("|")): p for key, p in data_out["parts"].items()}
    body = render(parts, data_out["cost"], data_out["meta"])
    common.write_results(
        "evidence_power", "Evidence power (CPU preset)", body, data_out, args, "python bench/evidence_power.py"
    )


if __name__ == "__main__":
    main()
