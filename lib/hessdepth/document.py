"""The results document (Markdown), from the summary tables and the verdicts on them.

Every number in it comes from the per-run and per-model tables; the rules that decide the
verdicts are printed verbatim (:data:`hessdepth.findings.RULES`, ``CURVATURE_RULES``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .findings import (
    CURVATURE_RULES,
    FINDINGS,
    PART_NAMES,
    RULES,
    Verdict,
    gauss_newton_answer,
    heaviest_block,
    part_ratios,
    verdicts,
)
from .models import build_model, count_params
from .summary import BLOCKS, BY_MODEL_RULE, GN_PARTS, model_label


def _num(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3g}"


def _with_interval(row: dict, name: str) -> str:
    if row["diverged"]:
        return "diverged"
    lo, hi = row[f"{name}_lo"], row[f"{name}_hi"]
    interval = f" [{_num(lo)}, {_num(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    return _num(row[name]) + interval


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in line) + " |" for line in body]


def _by_depth_table(by_model: Sequence[dict], step: int, columns: dict[str, str]) -> list[str]:
    """One line per depth: each column (label ``columns[name]``) for the ResNet and the simple
    net, seeds averaged, then the seeds each architecture has."""
    models = {(r["arch"], r["depth"]): r for r in by_model if r["step"] == step}
    header = ["depth", *[f"{arch} {label}" for label in columns.values() for arch in ("ResNet", "simple")]]
    body = []
    for depth in sorted({d for _, d in models}):
        cells = [str(depth)]
        for column in columns:
            for arch in ("resnet", "simple"):
                row = models.get((arch, depth))
                cells.append(_with_interval(row, column) if row else "")
        seeds = [models[a, depth]["n_seeds"] if (a, depth) in models else 0 for a in ("resnet", "simple")]
        cells.append(f"{seeds[0]} / {seeds[1]}")
        body.append(cells)
    return _table([*header, "seeds (ResNet / simple)"], body)


PAPER_IMAGES, PAPER_WIDTH, CLASSES = 50_000, 16, 10


def regime_section(rows: Sequence[dict], hessian_images: int) -> list[str]:
    """Images per parameter of each model's Hessian, N(C-1)/P, beside the paper's at its depth."""
    body = []
    for arch, depth, p in sorted({(r["arch"], r["depth"], r["n_params"]) for r in rows}):
        paper_p = count_params(build_model(arch, depth, PAPER_WIDTH))
        here, paper = hessian_images * (CLASSES - 1) / p, PAPER_IMAGES * (CLASSES - 1) / paper_p
        body.append(
            [model_label(arch, depth), f"{p:,}", f"{here:.2f}", f"{paper_p:,}", f"{paper:.2f}", f"{here / paper:.2f}"]
        )
    header = ["model", "P", "N(C-1)/P", "paper's P", "paper's N(C-1)/P", "ratio"]
    return [
        "## Regime: images per parameter",
        "",
        f"The Gauss-Newton part of a Hessian over N images has rank at most N(C-1) (C = {CLASSES} "
        f"classes). Here N = {hessian_images:,} images in the Hessian; the paper's is over all "
        f"{PAPER_IMAGES:,} training images of width-{PAPER_WIDTH} nets.",
        "",
        *_table(header, body),
        "",
    ]


INVARIANT_RULE = (
    "Statistics that do not grow with the parameter count P, per model (seeds averaged as above): the "
    "effective number of outliers P / kurtosis (Hutchinson; geometric mean, interval from the log "
    "scale), the sharpness lambda_max x lr (the learning rate in effect at the checkpoint; gradient "
    "descent is stable below 2, heavy-ball momentum 0.9 below 2(1 + 0.9) = 3.8) and the top "
    "eigenvalue's share lambda_max^2 / sum(lambda^2) of the squared spectrum."
)


INVARIANT_COLUMNS = {"hutch_outliers": "P/kurtosis", "lambda_max_lr": "lambda_max x lr", "top_share": "top share"}


def _loss_table(by_model: Sequence[dict]) -> list[str]:
    steps = sorted({r["step"] for r in by_model})
    cells = {(r["arch"], r["depth"], r["step"]): r for r in by_model}
    body = []
    for arch, depth in sorted({(r["arch"], r["depth"]) for r in by_model}):
        line = [model_label(arch, depth)]
        for step in steps:
            row = cells.get((arch, depth, step))
            if row is None:
                line.append("")
                continue
            partly = row["n_diverged"] and not row["diverged"]
            line.append(_with_interval(row, "train_loss") + (f" ({row['n_diverged']} diverged)" if partly else ""))
        body.append(line)
    return _table(["model", *[f"step {s}" for s in steps]], body)


def _heaviest_counts(by_model: Sequence[dict], arch: str) -> str:
    heaviest = [heaviest_block(r) for r in by_model if r["arch"] == arch]
    counts = {b: heaviest.count(b) for b in BLOCKS if b in heaviest}
    text = ", ".join(f"{b} in {n}" for b, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{text or 'none'} of {len(heaviest)} models"


def _curvature_tables(rows: Sequence[dict], by_model: Sequence[dict], step: int) -> list[str]:
    models = sorted((r for r in by_model if r["step"] == step), key=lambda r: (r["arch"], r["depth"]))
    lines = []
    if any(np.isfinite(r[f"block_{b}_kurtosis"]) for r in models for b in BLOCKS):
        body = [
            [
                model_label(r["arch"], r["depth"]),
                *[_with_interval(r, f"block_{b}_kurtosis") for b in BLOCKS],
                heaviest_block(r) or "–",
            ]
            for r in models
        ]
        lines += [f"### Step {step}: kurtosis of each block", ""]
        lines += _table(["model", *BLOCKS, "heaviest block"], body) + [""]
        lines += [
            f"**Which block carries the outliers?** Largest block kurtosis: ResNets: "
            f"{_heaviest_counts(models, 'resnet')}; simple nets: {_heaviest_counts(models, 'simple')}.",
            "",
        ]
    if any(np.isfinite(r["gauss_newton_kurtosis"]) for r in models):
        columns = [f"{p}_{s}" for s in ("skewness", "kurtosis") for p in GN_PARTS]
        body = [[model_label(r["arch"], r["depth"]), *[_with_interval(r, c) for c in columns]] for r in models]
        lines += [f"### Step {step}: the Hessian H and its Gauss-Newton part G, same probes", ""]
        lines += _table(["model", "H skewness", "G skewness", "H kurtosis", "G kurtosis"], body) + [""]
        answer, evidence = gauss_newton_answer(rows, step)
        lines += [f"**Is it the Gauss-Newton part that skip connections damp?** **{answer}**: {evidence}.", ""]
    ratios = part_ratios(rows, step)
    if ratios:
        lines += [f"Simple / ResNet kurtosis per part at step {step} (same depth and seed):", ""]
        lines += _table(["part", "simple / ResNet kurtosis"], [[PART_NAMES[p], str(c)] for p, c in ratios.items()])
        lines += [""]
    return lines


def curvature_section(rows: Sequence[dict], by_model: Sequence[dict]) -> list[str]:
    """ "Where the outliers live": per-block and Gauss-Newton tables and answers, every step."""
    lines = ["## Where the outliers live: blocks of the Hessian and its Gauss-Newton part", "", CURVATURE_RULES]
    for step in sorted({r["step"] for r in by_model}):
        lines += _curvature_tables(rows, by_model, step)
    return lines


def publishable_config(config: dict) -> dict:
    """``config`` with the archive's path cut to its file name (documents name no machine's paths)."""
    data = dict(config.get("data", {}))
    if data.get("archive"):
        data["archive"] = Path(str(data["archive"])).name
    return {**config, "data": data} if "data" in config else dict(config)


def _both(v: Verdict) -> str:
    return f"{v.verdict} / P/kurtosis: {v.invariant}" if v.invariant else v.verdict


def replication_section(
    rows: Sequence[dict], replications: dict[str, Sequence[dict]], run_name: str = "this run"
) -> list[str]:
    """Verdicts of this run beside those of independent reruns, and whether they agree."""
    runs = {run_name: verdicts(rows), **{name: verdicts(r) for name, r in replications.items()}}
    keys = [(v.finding, v.step) for v in runs[run_name]]
    by_run = {name: {(v.finding, v.step): _both(v) for v in vs} for name, vs in runs.items()}
    body = []
    for key in keys:
        cells = [by_run[name].get(key, "–") for name in runs]
        body.append([key[0], key[1], *[f"**{c}**" for c in cells], "yes" if len(set(cells)) == 1 else "**no**"])
    agree = sum(line[-1] == "yes" for line in body)
    return [
        "### The same verdicts on other images",
        "",
        f"The same preset rerun on disjoint training images; {agree} of {len(body)} verdicts agree.",
        "",
    ] + _table(["#", "step", *runs, "same"], body)


def render_results(
    rows: Sequence[dict],
    by_model: Sequence[dict],
    *,
    figures: Sequence[str],
    config: dict,
    machine: str,
    wall_time: str | None,
    sources: Sequence[str],
    data_source: str | None = None,
    replications: dict[str, Sequence[dict]] | None = None,
    run_name: str = "this run",
    generator: str = "scripts/results_doc.py",
    curvature: tuple[Sequence[dict], Sequence[dict]] | None = None,
    hessian_images: int | None = None,
) -> str:
    """The results document (Markdown), from the per-run and per-model tables only.

    ``figures`` are paths relative to the document; ``sources`` name the tables it was made from;
    ``data_source`` names the data (file name and checksum, never a machine's path);
    ``replications`` maps a name to the per-run table of an independent rerun (other images),
    whose verdicts are set beside these ones (``run_name``'s); ``generator`` names the script;
    ``curvature`` = (per-run, per-model) curvature tables, when the curvature stages ran;
    ``hessian_images``: the images of the Hessian, for the images-per-parameter table.
    """
    datasets = sorted({r["dataset"] for r in rows})
    synthetic = any(r["synthetic"] for r in rows)
    lines = [
        "# Results: the effect of network depth on the Hessian spectrum",
        "",
        f"Generated from {', '.join(f'`{s}`' for s in sources)} by `{generator}`; "
        "every number below comes from those tables. Do not edit by hand.",
        "",
    ]
    if synthetic:
        lines += [
            "> **Synthetic data.** These runs use generated images, not CIFAR-10: they test the "
            "workflow, not the paper's claims.",
            "",
        ]
    models = [model_label(a, d) for a, d in sorted({(r["arch"], r["depth"]) for r in rows})]
    lines += [
        "## Setup",
        "",
        f"- Dataset: {', '.join(datasets)}" + (f" ({data_source})" if data_source else ""),
        f"- Models: {', '.join(models)}; seeds: {sorted({r['seed'] for r in rows})}; "
        f"steps: {sorted({r['step'] for r in rows})}; BatchNorm mode of the Hessian: "
        f"{', '.join(sorted({r['bn_mode'] for r in rows}))}",
        f"- Runs that diverged: {sum(r['diverged'] for r in rows)} of {len(rows)}",
        f"- Machine: {machine}",
        f"- Wall time: {wall_time or 'not recorded'}",
        "",
        "<details><summary>Configuration</summary>",
        "",
        "```json",
        json.dumps(config, indent=2, default=str),
        "```",
        "",
        "</details>",
        "",
        *(regime_section(rows, hessian_images) if hessian_images else []),
        "## Findings",
        "",
    ]
    lines += _table(
        ["#", "finding", "step", "verdict", "on P / kurtosis", "statistics"],
        [
            [
                v.finding,
                FINDINGS[v.finding],
                v.step,
                f"**{v.verdict}**",
                f"**{v.invariant}**" if v.invariant else "–",
                v.evidence,
            ]
            for v in verdicts(rows)
        ],
    )
    if replications:
        lines += [""] + replication_section(rows, replications, run_name)
    lines += ["", "### How the verdicts are decided", "", RULES, ""]
    lines += [
        "## Skewness and kurtosis of the Hessian spectrum",
        "",
        "Per model over the seeds that did not diverge, by this rule: "
        + BY_MODEL_RULE
        + " Kurtosis is not excess (3 for a Gaussian).",
        "",
    ]
    for step in sorted({r["step"] for r in by_model}):
        for estimator, name in (("slq", "stochastic Lanczos quadrature"), ("hutch", "Hutchinson moments")):
            lines += (
                [f"### Step {step}, {name}", ""]
                + _by_depth_table(by_model, step, {f"{estimator}_{s}": s for s in ("skewness", "kurtosis")})
                + [""]
            )
    lines += ["## Statistics that do not grow with the parameter count", "", INVARIANT_RULE, ""]
    for step in sorted({r["step"] for r in by_model}):
        lines += [f"### Step {step}", ""] + _by_depth_table(by_model, step, INVARIANT_COLUMNS) + [""]
    if curvature:
        lines += curvature_section(*curvature)
    lines += [
        "## Training loss at each checkpoint",
        "",
        "The training loss recorded in each checkpoint; mean over seeds [t-interval when there are several].",
        "",
    ]
    lines += _loss_table(by_model) + ["", "## Figures", ""]
    for path in figures:
        name = Path(path).stem
        lines += [f"### {name}", "", f"![{name}]({path})", ""]
    return "\n".join(lines)
