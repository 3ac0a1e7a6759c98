"""Power and sample-size study of the CPU evidence preset, at its first checkpoint (half 0).

Variance by source. The preset's Hessian covers every training image, so a statistic x of one
run (asinh skewness, log kurtosis, log P/kurtosis: the scales the summary averages them on)
varies between seeds by two parts:

    x[seed] = mu + seed effect + probe noise
    probe: bootstrap variance over the run's Hutchinson probes, averaged over seeds
    seed : variance over seeds minus the probe part (0 if below)

The same split is made of each finding's contrast of two models, seed by seed (finding 2: the
deepest minus the shallowest simple net; 3: simple-d minus ResNet-d; 4: simple-d minus
ResNet-(2d+4)), and from it the seeds a 95% t-interval that excludes 0 needs if the mean and the
parts are the observed ones, with the preset's probes and with twice as many. log P/kurtosis is
log P - log kurtosis: its parts are the kurtosis's, its contrasts shift by the log ratio of P.

Sample size. At the same checkpoint of a shallow and a deep finding-4 pair, the statistics with
the Hessian over 160, 640 and all training images (class-balanced subsets, subset seed 0, batches
near the preset's size, the run's own probes: a difference is the images', not the probes'). All
images is the run's moments.h5; one of them is recomputed here as a check that the settings match.
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
from hessdepth.moments import _stats
from hessdepth.statistics import SCALES, paired_comparison
from hessdepth.summary import scale_of
from hessdepth.workflow import checkpoint_operator

ROOT = common.BENCH.parent
RUN = "cifar_cpu"  # the preset's run name: results/cifar_cpu/, benchmarks/cifar_cpu/
STATS = ("skewness", "kurtosis", "outliers")
SAMPLE_SIZES = (160, 640)  # Hessian images besides all of them (--sizes)


def probe_stats(values: np.ndarray, n_params: int, resamples: int = 1000, seed: int = 0) -> dict:
    """Per statistic (its value on the summary's scale, bootstrap variance over the probes) of the
    probe-averaged moments."""
    boot = values[np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))].mean(1)
    out = {}
    for i, name in ((2, "skewness"), (3, "kurtosis")):
        forward = SCALES[scale_of(name)][0]
        point = float(forward(_stats(*values.mean(0))[i]))
        b = forward(np.asarray(_stats(*boot.T)[i]))
        out[name] = (point, float(np.var(b[np.isfinite(b)], ddof=1)))
    out["outliers"] = (math.log(n_params) - out["kurtosis"][0], out["kurtosis"][1])
    return out


def split(x: np.ndarray, probe_var: np.ndarray) -> dict:
    """Seed and probe parts of x[seed], from the probe variances beside it."""
    probe = float(np.mean(probe_var))
    return {"mean": float(np.mean(x)), "seed": max(0.0, float(np.var(x, ddof=1)) - probe), "probe": probe}


def half_width(parts: dict, seeds: int, probes_ratio: float = 1.0) -> float:
    var = parts["seed"] + parts["probe"] / probes_ratio
    return float(sps.t.ppf(0.975, seeds - 1) * math.sqrt(var / seeds))


def seeds_needed(parts: dict, probes_ratio: float = 1.0, most: int = 1000) -> float:
    """The fewest seeds whose 95% half-width is below |mean| (inf past ``most``)."""
    if not parts["mean"]:
        return math.inf
    return next((k for k in range(2, most) if half_width(parts, k, probes_ratio) < abs(parts["mean"])), math.inf)


def contrasts(depths: list[int], models: set[str]) -> list[tuple[int, str, str]]:
    """(finding, model a, model b) of every contrast a - b the findings judge among ``depths``
    whose two models are in ``models``; finding 2's is its deepest and shallowest simple net."""
    simple = sorted(d for d in depths if hd.model_id("simple", d) in models)
    out = [(2, hd.model_id("simple", simple[-1]), hd.model_id("simple", simple[0]))] if len(simple) > 1 else []
    out += [(3, hd.model_id("simple", d), hd.model_id("resnet", d)) for d in depths]
    out += [(4, hd.model_id("simple", d), hd.model_id("resnet", 2 * d + 4)) for d in depths if 2 * d + 4 in depths]
    return [(f, a, b) for f, a, b in out if {a, b} <= models]


def moments_file(run: Path, model: str, seed: int, step: int) -> Path:
    return run / f"results/{RUN}/hessian/{model}/seed{seed}/step{step}/moments.h5"


def run_moments(run: Path, model: str, seed: int, step: int) -> tuple[np.ndarray, int]:
    """The run's Hutchinson probe values of one checkpoint and the model's parameter count."""
    with h5py.File(moments_file(run, model, seed, step), "r") as f:
        if f.attrs.get("hessian_samples") is None:
            raise ValueError(f"{f.filename} has no hessian_samples attribute")
        return f["probe_values"][()], int(f.attrs["n_params"])


def settings(preset: dict, section: str) -> dict:
    """A section of config.yaml with the preset's keys over it, as the workflow sees it."""
    return {**yaml.safe_load((ROOT / "config.yaml").read_text())[section], **preset.get(section, {})}


def sample_moments(run: Path, model: str, seed: int, step: int, samples: int | None, preset: dict) -> dict:
    """Hutchinson probe values with the Hessian over ``samples`` images (None: all), the run's probes;
    kept in the run's folder (evidence_power/), so that an interrupted study resumes."""
    hessian, moments = (settings(preset, name) for name in ("hessian", "moments"))
    n_train = hd.training_set_size(run / f"results/{RUN}/data.h5")
    images = samples or n_train
    kept = run / "evidence_power" / f"{model}_seed{seed}_step{step}_{images}.npz"
    if kept.exists():
        with np.load(kept) as f:
            return {"values": f["values"], "seconds": float(f["seconds"]), "images": images}
    op, _ = checkpoint_operator(
        run / f"results/{RUN}/train/{model}/seed{seed}/step{step}.h5",
        run / f"results/{RUN}/data.h5",
        samples=samples,
        subset_seed=hessian["subset_seed"],
        batch_size=images // max(1, round(images / hessian["batch_size"])),
        bn_mode=hessian["bn_mode"],
        dtype=hessian["dtype"],
        device="cpu",
        graph_cache_gb=hessian["graph_cache_gb"],
    )
    tic = time.perf_counter()
    res = hd.hutchinson_moments(op, probes=moments["probes"], seed=moments["seed"])
    seconds = time.perf_counter() - tic
    kept.parent.mkdir(exist_ok=True)
    with open(kept.with_suffix(".part"), "wb") as f:  # renamed when whole: a killed study leaves no result
        np.savez(f, values=res.probe_values, seconds=seconds)
    kept.with_suffix(".part").rename(kept)
    return {"values": res.probe_values, "seconds": seconds, "images": images}


def job_seconds(run: Path, kind: str, model: str, seeds, steps=(None,)) -> float:
    """Median job time (s) of the run's ``kind`` jobs for ``model`` over seeds and steps."""
    times = []
    for seed in seeds:
        for step in steps:
            tsv = run / f"benchmarks/{RUN}/{kind}/{model}_seed{seed}{'' if step is None else f'_step{step}'}.tsv"
            if tsv.exists():
                times.append(float(tsv.read_text().splitlines()[-1].split("\t")[0]))
    return float(np.median(times)) if times else float("nan")


def finished_models(run: Path, preset: dict, step: int) -> set[str]:
    """The preset's models with moments.h5 at ``step`` for every seed."""
    seeds, depths = preset["models"]["seeds"], preset["models"]["depths"]
    models = {hd.model_id(a, d) for a in ("simple", "resnet") for d in depths}
    return {m for m in models if all(moments_file(run, m, s, step).exists() for s in seeds)}


def variance_study(run: Path, preset: dict, step: int, judged: list) -> dict:
    """Variance parts per model and per contrast in ``judged``."""
    seeds = preset["models"]["seeds"]
    models = sorted({m for _, a, b in judged for m in (a, b)})
    x, v = {}, {}
    for model in models:
        for si, seed in enumerate(seeds):
            values, n_params = run_moments(run, model, seed, step)
            for stat, (value, var) in probe_stats(values, n_params).items():
                x.setdefault((model, stat), np.full(len(seeds), np.nan))[si] = value
                v.setdefault((model, stat), np.full(len(seeds), np.nan))[si] = var
    parts = {(m, s): split(x[m, s], v[m, s]) for m, s in x}
    for finding, a, b in judged:
        for stat in STATS:
            parts[f"{finding}: {a} - {b}", stat] = split(x[a, stat] - x[b, stat], v[a, stat] + v[b, stat])
    return parts


def sample_study(run: Path, preset: dict, step: int, judged: list, sizes=SAMPLE_SIZES) -> dict:
    """Per (model, images): the probe-averaged statistics of each seed; and the recomputed check."""
    seeds = preset["models"]["seeds"]
    pairs = [(a, b) for f, a, b in judged if f == 4]
    pairs = [pairs[0], pairs[-1]] if len(pairs) > 1 else pairs  # the shallowest and the deepest pair
    out, seconds = {}, {}
    for model in [m for pair in pairs for m in pair]:
        for seed in seeds:
            values, n_params = run_moments(run, model, seed, step)
            by_images = {hd.training_set_size(run / f"results/{RUN}/data.h5"): values}
            for samples in sizes:
                got = sample_moments(run, model, seed, step, samples, preset)
                by_images[samples] = got["values"]
                seconds.setdefault(f"{model}|{samples}", []).append(got["seconds"])
                print(f"{model} seed {seed}: {samples} images {got['seconds']:.0f} s", flush=True)
            for images, vals in by_images.items():
                stats = {k: p for k, (p, _) in probe_stats(vals, n_params).items()}
                out.setdefault(f"{model}|{images}", []).append(stats)
    check_model, check_seed = pairs[0][0], seeds[0]
    recomputed = sample_moments(run, check_model, check_seed, step, None, preset)
    stored, _ = run_moments(run, check_model, check_seed, step)
    check = {
        "model": check_model,
        "seed": check_seed,
        "max_relative_difference": float(np.max(np.abs(recomputed["values"] - stored) / np.abs(stored).max(0))),
    }
    medians = {k: float(np.median(s)) for k, s in seconds.items()}
    return {"stats": out, "pairs": pairs, "check": check, "seconds": medians}


def main() -> None:
    def extra(p):
        p.add_argument("--run", default=str(ROOT / f"runs/{RUN}/half0"), help="a finished run of the preset")
        p.add_argument("--preset", default=str(ROOT / "config/cifar_cpu.yaml"))
        p.add_argument("--sizes", type=int, nargs="+", default=SAMPLE_SIZES, help="Hessian images besides all")
        p.add_argument(
            "--render-only", action="store_true", help="rewrite the tables from bench/results/evidence_power.json"
        )

    args = common.parse_args(__doc__, repeats=1, extra=extra)
    if args.render_only:
        write(common.read_result("evidence_power"), args)
        return
    torch.set_num_threads(1)
    run = Path(args.run)
    preset = yaml.safe_load(Path(args.preset).read_text())
    if args.quick:  # a smoke check of the script: two seeds
        preset["models"]["seeds"] = preset["models"]["seeds"][:2]
    step = min(preset["train"]["checkpoints"])
    judged = contrasts(preset["models"]["depths"], finished_models(run, preset, step))
    parts = variance_study(run, preset, step, judged)
    samples = sample_study(run, preset, step, judged, args.sizes)
    seeds = preset["models"]["seeds"]
    cost = {
        m: {"train": job_seconds(run, "train", m, seeds), "moments": job_seconds(run, "moments", m, seeds, [step])}
        for m in sorted({m for _, a, b in judged for m in (a, b)})
    }
    data_out = {
        "parts": {f"{name}|{stat}": p for (name, stat), p in parts.items()},
        "samples": samples,
        "cost": cost,
        "meta": dict(run=run.name, step=step, seeds=seeds, probes=preset["moments"]["probes"]),
    }
    write(data_out, args)


def _geo(values: list[float]) -> str:
    mean = math.exp(np.mean(values))
    return f"{mean:,.0f}" if mean >= 100 else f"{mean:.3g}"


def _variance_tables(parts: dict, n: int) -> str:
    rows = []
    for (name, stat), p in parts.items():
        total = p["seed"] + p["probe"]
        rows.append(
            [
                name,
                stat,
                f"{p['mean']:+.2f}",
                *(f"{p[k]:.4f} ({p[k] / total:.0%})" if total else "0" for k in ("seed", "probe")),
                f"{half_width(p, n):.2f}",
                *((f"{seeds_needed(p, r):g}" for r in (1, 2)) if ":" in name else ("", "")),
            ]
        )
    headers = ["model or contrast", "statistic", "mean", "seed", "probes", f"95% half-width, {n} seeds"]
    return common.table(headers + ["seeds needed", "seeds needed, 2x probes"], rows)


def _sample_tables(samples: dict) -> str:
    stats, rows = samples["stats"], []
    sizes = sorted({int(key.split("|")[1]) for key in stats})
    models = [m for pair in samples["pairs"] for m in pair]
    for model in models:
        for stat in ("kurtosis", "outliers"):
            cells = [_geo([s[stat] for s in stats[f"{model}|{k}"]]) for k in sizes]
            rows.append([model, stat, *cells])
    for a, b in samples["pairs"]:
        for stat in ("kurtosis", "outliers"):
            cells = []
            for k in sizes:
                xa = [s[stat] for s in stats[f"{a}|{k}"]]
                xb = [s[stat] for s in stats[f"{b}|{k}"]]
                c = paired_comparison(np.exp(xa), np.exp(xb), "log")
                cells.append(f"{math.exp(c.mean):.2f} [{math.exp(c.lo):.2f}, {math.exp(c.hi):.2f}]")
            rows.append([f"{a} / {b}", stat, *cells])
    return common.table(["model or pair", "statistic", *(f"{k:,} images" for k in sizes)], rows)


def render(data: dict) -> str:
    parts = {tuple(key.split("|")): p for key, p in data["parts"].items()}
    meta, samples = data["meta"], data["samples"]
    n = len(meta["seeds"])
    n_all = max(int(key.split("|")[1]) for key in samples["stats"])
    check = samples["check"]
    seconds = "; ".join(f"{k.replace('|', ', ')} images {s:.0f} s" for k, s in samples["seconds"].items())
    return (
        f"Run: `runs/{RUN}/{meta['run']}` (config/cifar_cpu.yaml), step {meta['step']}; seeds {meta['seeds']}; "
        f"the Hessian over all {n_all:,} training images; {meta['probes']} Hutchinson probes.\n\n"
        "### Variance by source, and the seeds each finding's contrast needs\n\n"
        + _variance_tables(parts, n)
        + f"\n\nMeans and parts on the log (kurtosis, outliers = P/kurtosis) or asinh (skewness) scale: 0.69 is "
        f"a factor of 2. Half-width: of the 95% t-interval of the mean over {n} seeds ({n - 1} d.f.). Seeds "
        "needed: the fewest whose 95% interval excludes 0 at the observed mean and parts (inf: the mean is "
        "within the noise at any count below 1000); with three seeds each part is itself rough.\n\n"
        "### How the number of Hessian images moves the answer\n\n"
        + _sample_tables(samples)
        + "\n\nModels: geometric mean over seeds of the kurtosis and of P/kurtosis. Pairs: the paired ratio "
        "a / b over seeds (geometric mean, 95% interval), the quantity finding 4 is decided on. The same "
        f"probes at every size. Check: {check['model']} seed {check['seed']} recomputed here over all images "
        f"differs from the run's moments.h5 by at most {check['max_relative_difference']:.1e} (relative to each "
        f"moment's largest probe value). Times (one thread, median over seeds): {seconds}.\n\n"
        "The run's job times (median over seeds, s, one thread each, two jobs on the two cores): "
        + "; ".join(f"{m} training {c['train']:,.0f}, moments {c['moments']:,.0f}" for m, c in data["cost"].items())
        + ".\n"
    )


def write(data_out: dict, args) -> None:
    title, command = "Evidence power (CPU preset)", "python bench/evidence_power.py"
    common.write_results("evidence_power", title, render(data_out), data_out, args, command)


if __name__ == "__main__":
    main()
