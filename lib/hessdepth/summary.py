"""Aggregation of the per-checkpoint Hessian files into one table.

One row per model x seed x step: the run's identity, its training metrics (from the
checkpoint), the extreme Ritz values, and mean / std / skewness / kurtosis of the eigenvalue
distribution with intervals from two independent estimators, stochastic Lanczos quadrature
(columns ``slq_*``) and Hutchinson's moments (``hutch_*``), and statistics that do not grow
with the parameter count P: the effective number of outliers
P / kurtosis (``*_outliers``), the learning rate at the checkpoint with lambda_max x lr (its
sharpness against the 2 / lr edge of stability), and lambda_max^2 / sum(lambda^2), the share of
the squared spectrum in the top eigenvalue (``top_share``). Each row also has a
std-normalised density on a grid common to all rows (averaged over each grid cell, see
:func:`hessdepth.density.cell_density`).

:func:`aggregate_by_model` averages seeds by the rule :data:`BY_MODEL_RULE`.

:func:`summarize_curvature` makes a second table, of the optional curvature stages: skewness
and kurtosis of each diagonal block of the Hessian (``block_{name}_*``) and of the Hessian and
its Gauss-Newton part on the same probes (``hessian_*``, ``gauss_newton_*``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .density import cell_density, common_grid, node_spacing_width
from .h5io import (
    OutputError,
    check_identity,
    rebuild_hint,
    open_checked,
    read_json_attr,
)
from .identity import PATH, RUN, SAME_RUN, without_seed
from .models import resnet_blocks
from .provenance import check_run, read_provenance
from .moments import quadrature_moments, spectral_stats
from .statistics import seed_average
from .training import TrainConfig, lr_at

log = logging.getLogger(__name__)

IDENTITY = (*RUN, "bn_mode")  # a per-run file: its run, and the BatchNorm mode of its Hessian
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
RITZ = ("lambda_min", "lambda_max")
KERNEL = ("kernel_width",)
STATS = ("mean", "std", "skewness", "kurtosis")
ESTIMATORS = ("slq", "hutch")
STAT_COLUMNS = tuple(f"{e}_{s}" for e in ESTIMATORS for s in STATS)
OUTLIER_COLUMNS = tuple(f"{e}_outliers" for e in ESTIMATORS)  # P / kurtosis, with intervals
SHARPNESS = ("lr", "lambda_max_lr", "top_share")  # per run, no probe interval


def _with_interval(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(c for n in names for c in (n, f"{n}_lo", f"{n}_hi"))


# what names a run (model, seed, step) in every per-run table
RUN_COLUMNS = (*RUN, "diverged", "bn_mode")
COLUMNS = (
    *RUN_COLUMNS,
    *METRICS,
    *RITZ,
    *KERNEL,
    *_with_interval(STAT_COLUMNS),
    *SHARPNESS,
    *_with_interval(OUTLIER_COLUMNS),
)
MODEL_IDENTITY = without_seed(IDENTITY)


def by_model_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """Columns of a per-model table whose per-run ``columns`` are averaged over seeds."""
    return (*MODEL_IDENTITY, "diverged", "n_seeds", "n_diverged", "interval", *_with_interval(columns))


BY_MODEL_COLUMNS = by_model_columns(METRICS + RITZ + SHARPNESS + STAT_COLUMNS + OUTLIER_COLUMNS)
TAIL_STATS = ("skewness", "kurtosis")
BLOCKS = tuple(resnet_blocks())
GN_PARTS = ("hessian", "gauss_newton")
BLOCK_COLUMNS = tuple(f"block_{b}_{s}" for b in BLOCKS for s in TAIL_STATS)
GN_COLUMNS = tuple(f"{p}_{s}" for p in GN_PARTS for s in TAIL_STATS)
CURVATURE_STAT_COLUMNS = BLOCK_COLUMNS + GN_COLUMNS
CURVATURE_COLUMNS = (*RUN_COLUMNS, *_with_interval(CURVATURE_STAT_COLUMNS))
CURVATURE_BY_MODEL_COLUMNS = by_model_columns(CURVATURE_STAT_COLUMNS)


def scale_of(column: str) -> str:
    """The scale seeds are averaged on: log for a kurtosis or an effective number of outliers,
    asinh for a skewness, else linear."""
    return "log" if column.endswith(("kurtosis", "outliers")) else "asinh" if column.endswith("skewness") else "linear"


BY_MODEL_RULE = (
    "Diverged seeds are left out. With at least two seeds, kurtosis (positive, heavy-tailed, "
    "multiplicative across seeds) is the geometric mean over seeds with a Student-t interval of the "
    "mean of the logarithms, mapped back, so it never reaches zero; skewness (heavy-tailed, of either "
    "sign) is averaged the same way on the asinh scale (a signed log), so its interval crosses zero "
    "only when the seeds straddle it; every other column gets the arithmetic mean and a Student-t "
    "interval. With one seed the interval is that seed's probe interval (spectral statistics) or none "
    "(training metrics, Ritz values). The column 'interval' says which: 'seeds', 'probe' or 'none'. "
    "The spread across seeds contains each seed's probe and Hessian-subsample noise, so the "
    "across-seed interval covers all three."
)
STR_COLUMNS = {"dataset", "model", "arch", "bn_mode", "interval"}
BOOL_COLUMNS = {"synthetic", "diverged"}
INT_COLUMNS = {"depth", "seed", "step", "n_params", "n_seeds", "n_diverged"}


@dataclass
class Summary:
    """The table (``rows``, in input order) and each row's density on ``grid`` (std units)."""

    rows: list[dict]
    grid: np.ndarray
    density: np.ndarray


def model_label(arch: str, depth: int) -> str:
    """``ResNet-20`` / ``simple-20``, as the paper names them."""
    return f"{'ResNet' if arch == 'resnet' else arch}-{depth}"


def read_identity(f, path, keys: Sequence[str] = IDENTITY) -> dict:
    """Identity attributes of a per-run file (``keys``), with Python types."""
    missing = [k for k in keys if k not in f.attrs]
    if missing:
        raise OutputError(f"{path}: missing attributes {missing}")
    return {k: _typed(k, f.attrs[k]) for k in keys}


def _typed(name: str, value):
    return bool(value) if name in BOOL_COLUMNS else int(value) if name in INT_COLUMNS else str(value)


def _check_same_run(ref: dict, ref_path, other: dict, other_path) -> None:
    keys = [k for k in SAME_RUN if k in ref and k in other]
    if any(ref[k] != other[k] for k in keys):
        a = {k: ref[k] for k in keys}
        b = {k: other[k] for k in keys}
        raise OutputError(f"{ref_path} ({a}) and {other_path} ({b}) are not the same run")


def _nan_stats(prefix: str) -> dict:
    return {c: np.nan for c in _with_interval(f"{prefix}_{s}" for s in STATS)}


def _stats_columns(prefix: str, per_probe: np.ndarray, stats: dict, names: Sequence[str] = STATS) -> dict:
    result = spectral_stats(per_probe, **stats)
    row = {}
    for s in names:
        row[f"{prefix}_{s}"], row[f"{prefix}_{s}_lo"], row[f"{prefix}_{s}_hi"] = (float(v) for v in result[s])
    return row


def read_spectrum(
    lanczos_path: os.PathLike | str,
    moments_path: os.PathLike | str | None = None,
    *,
    grid: np.ndarray,
    sigma2: float,
    stats: dict,
    spacing_factor: float | None = None,
) -> tuple[dict, np.ndarray]:
    """Identity, Ritz extremes, SLQ (and Hutchinson) statistics and normalised density of a run.

    The density's kernel is the paper's (``sigma2``) or, with ``spacing_factor``, that many
    times each node's spacing to its neighbours (:func:`hessdepth.density.node_spacing_width`);
    the row's ``kernel_width`` is the kernel's s.d. (at the heaviest node, for the adaptive one)
    in units of the spectrum's standard deviation.

    A spectrum whose Lanczos nodes are not finite (or whose file says ``diverged``) is
    returned with ``diverged=True``, NaN statistics and a NaN density.
    """
    with open_checked(lanczos_path, ("nodes", "weights")) as f:
        row = read_identity(f, lanczos_path)
        row["provenance"] = {"lanczos": read_provenance(f, lanczos_path)}
        nodes, weights = f["nodes"][()], f["weights"][()]
        flagged = bool(f.attrs.get("diverged", False))
    used = weights > 0
    finite = used.any() and np.isfinite(nodes[used]).all() and np.isfinite(weights).all()
    row["diverged"] = flagged or not finite
    row.update(_nan_stats("slq"))
    row.update(_nan_stats("hutch"))
    row["lambda_min"] = row["lambda_max"] = row["kernel_width"] = np.nan
    dens = np.full(len(grid), np.nan)
    if finite:
        row["lambda_min"] = float(np.min(nodes[used]))
        row["lambda_max"] = float(np.max(nodes[used]))
        row.update(_stats_columns("slq", quadrature_moments(nodes, weights, kmax=4), stats))
        width = node_spacing_width(nodes, weights, spacing_factor) if spacing_factor else None
        dens = cell_density(nodes, weights, grid, sigma2, width=width)
        if width is None:
            width = np.sqrt(sigma2 * max(1.0, row["lambda_max"] - row["lambda_min"]))
        else:  # the kernel at the heaviest node, which carries the bulk
            width = width.ravel()[np.argmax(weights)]
        row["kernel_width"] = float(width / row["slq_std"])
        mass = dens.sum() * (grid[1] - grid[0])
        if abs(mass - 1) > 0.05:
            log.warning("%s: only %.3f of the spectrum lies on the grid; widen grid_range", lanczos_path, mass)
    if moments_path is not None:
        with open_checked(moments_path, ("probe_values",)) as f:
            _check_same_run(row, lanczos_path, read_identity(f, moments_path), moments_path)
            row["provenance"]["moments"] = read_provenance(f, moments_path)
            probe_values = f["probe_values"][()]
        if np.isfinite(probe_values).all():
            row.update(_stats_columns("hutch", probe_values, stats))
        else:
            row["diverged"] = True
    for e in ESTIMATORS:
        for end, other in (("", ""), ("_lo", "_hi"), ("_hi", "_lo")):
            kurtosis = row[f"{e}_kurtosis{other}"]
            row[f"{e}_outliers{end}"] = row["n_params"] / kurtosis if kurtosis > 0 else np.nan
    return row, np.asarray(dens, dtype=float)


def sharpness_columns(row: dict) -> dict:
    """:data:`SHARPNESS` of a row with ``n_params``, ``lambda_max``, the ``hutch_*`` statistics and
    ``lr``: lambda_max x lr and lambda_max^2 / sum(lambda^2) (sum from Hutchinson's mean and std).
    The ``*_outliers`` (P / kurtosis, interval bounds swapped) come with the spectrum."""
    out = {"lr": row["lr"], "lambda_max_lr": row["lambda_max"] * row["lr"]}
    squares = row["n_params"] * (row["hutch_std"] ** 2 + row["hutch_mean"] ** 2)
    out["top_share"] = row["lambda_max"] ** 2 / squares if squares > 0 else np.nan
    return out


def _lr_at_checkpoint(config: dict | None, step: int) -> float:
    if not config:
        return np.nan
    return lr_at(TrainConfig(**config), step)


def read_checkpoint_metrics(path: os.PathLike | str) -> dict:
    """Model, seed, step, training metrics, ``diverged`` and the learning rate in effect at the
    step (``lr``, from the training settings it records) of a checkpoint (not its state)."""
    with open_checked(path, attrs=METRICS + ("diverged",)) as f:
        row = read_identity(f, path, PATH)
        row["provenance"] = read_provenance(f, path, "config")
        if "dataset" in f.attrs:
            row["dataset"] = str(f.attrs["dataset"])
        row.update({k: float(f.attrs[k]) for k in METRICS})
        row["diverged"] = bool(f.attrs["diverged"])
    row["lr"] = _lr_at_checkpoint(row["provenance"].settings, row["step"])
    return row


def summarize(
    lanczos: Sequence[str],
    moments: Sequence[str],
    checkpoints: Sequence[str],
    *,
    density: dict,
    stats: dict,
    expect: Sequence[dict] | None = None,
    settings: dict[str, dict] | None = None,
) -> Summary:
    """Build the table from three parallel lists of files (one model x seed x step each).

    ``expect`` (parallel to the files): the model, seed and step each run's files must hold.
    ``settings``: the settings the files must have been made with (``lanczos``, ``moments``,
    ``train``); then every file must also come from its run's checkpoint and all from one dataset
    (:func:`hessdepth.provenance.check_run`).

    ``density``: ``sigma2``, ``grid_points``, ``grid_range`` (std units); ``stats``: keyword
    arguments of :func:`hessdepth.spectral_stats` (``confidence``, ``method``, ``seed``).
    """
    if not len(lanczos) == len(moments) == len(checkpoints):
        raise ValueError(
            f"need one moments and one checkpoint file per Lanczos file, got "
            f"{len(lanczos)} lanczos, {len(moments)} moments, {len(checkpoints)} checkpoints"
        )
    grid = common_grid(density["grid_range"], density["grid_points"])
    rows, densities, data_sha256 = [], [], None
    for i, (lz, mo, ck) in enumerate(zip(lanczos, moments, checkpoints)):
        spectrum, dens = read_spectrum(
            lz, mo, grid=grid, sigma2=density["sigma2"], stats=stats, spacing_factor=density.get("spacing_factor")
        )
        metrics = read_checkpoint_metrics(ck)
        if expect is not None:
            check_identity(lz, spectrum, expect[i])
        _check_same_run(spectrum, lz, metrics, ck)
        if settings is not None:
            data_sha256 = check_run(spectrum["provenance"], metrics["provenance"], settings, data_sha256)
        if spectrum["diverged"] and not metrics["diverged"]:
            raise OutputError(
                f"{lz} or {mo} holds non-finite values but {ck} did not diverge; {rebuild_hint(f'{lz} {mo}')}"
            )
        row = {**spectrum, **{k: metrics[k] for k in METRICS + ("diverged", "lr")}}
        row.update(sharpness_columns(row))
        rows.append({c: row[c] for c in COLUMNS})
        densities.append(dens)
        log.info("%s seed %d step %d: diverged=%s", row["model"], row["seed"], row["step"], row["diverged"])
    return Summary(rows, grid, np.array(densities).reshape(len(rows), len(grid)))


def read_parts(path: os.PathLike | str, stats: dict, column: str = "{part}") -> dict:
    """Identity, ``diverged`` and skewness and kurtosis with intervals of each part of a
    blocks.h5 or gauss_newton.h5 file, as columns ``column.format(part=name)_skewness`` ..."""
    with open_checked(path, attrs=("parts",)) as f:
        row = read_identity(f, path)
        row["provenance"] = read_provenance(f, path)
        values = {name: f[f"{name}/probe_values"][()] for name in read_json_attr(f, "parts")}
        flagged = bool(f.attrs.get("diverged", False))
    row["diverged"] = flagged or not all(np.isfinite(v).all() for v in values.values())
    for name, per_probe in values.items():
        prefix = column.format(part=name)
        if row["diverged"]:
            row.update({c: np.nan for c in _with_interval(f"{prefix}_{s}" for s in TAIL_STATS)})
        else:
            row.update(_stats_columns(prefix, per_probe, stats, TAIL_STATS))
    return row


def summarize_curvature(
    blocks: Sequence[str] | None = None,
    gauss_newton: Sequence[str] | None = None,
    *,
    stats: dict,
    checkpoints: Sequence[str] | None = None,
    settings: dict | None = None,
) -> list[dict]:
    """The curvature table (:data:`CURVATURE_COLUMNS`) from parallel lists of blocks.h5 and
    gauss_newton.h5 files, one model x seed x step each; a stage that is off (None or empty)
    leaves its columns NaN. With ``checkpoints`` (parallel) and ``settings`` (the curvature
    settings the files must have been made with), provenance is checked as in :func:`summarize`."""
    stages = [(files, column) for files, column in ((blocks, "block_{part}"), (gauss_newton, "{part}")) if files]
    if not stages or len({len(files) for files, _ in stages}) > 1:
        raise ValueError("need blocks files, gauss_newton files or equally many of both")
    rows, data_sha256 = [], None
    for i, paths in enumerate(zip(*(files for files, _ in stages))):
        row = dict.fromkeys(_with_interval(CURVATURE_STAT_COLUMNS), np.nan)
        diverged, made = False, {}
        for path, (_, column) in zip(paths, stages):
            part = read_parts(path, stats, column)
            _check_same_run(part, path, row, paths[0])
            diverged |= part["diverged"]
            made[path] = part.pop("provenance")
            row.update(part)
        if settings is not None:
            checkpoint = read_checkpoint_metrics(checkpoints[i])["provenance"]
            data_sha256 = check_run(made, checkpoint, dict.fromkeys(made, settings), data_sha256)
        row["diverged"] = diverged
        rows.append({c: row[c] for c in CURVATURE_COLUMNS})
    return rows


def aggregate_by_model(
    rows: Sequence[dict],
    confidence: float,
    stat_columns: Sequence[str] = STAT_COLUMNS + OUTLIER_COLUMNS,
    plain_columns: Sequence[str] = METRICS + RITZ + SHARPNESS,
) -> list[dict]:
    """One row per (dataset, model, step), seeds averaged by :data:`BY_MODEL_RULE`.

    ``stat_columns`` are spectral statistics with probe intervals (skewness and kurtosis on their
    scales, :func:`scale_of`), ``plain_columns`` the other averaged columns.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["model"], row["step"]), []).append(row)
    out = []
    for group in groups.values():
        kept = [r for r in group if not r["diverged"]]
        agg = {k: group[0][k] for k in MODEL_IDENTITY}
        agg.update(
            diverged=not kept,
            n_seeds=len(kept),
            n_diverged=len(group) - len(kept),
            interval="seeds" if len(kept) >= 2 else "probe" if kept else "none",
        )
        for name in (*plain_columns, *stat_columns):
            values = np.array([r[name] for r in kept], dtype=float)
            value = lo = hi = np.nan
            if len(values) >= 2:
                value, lo, hi = seed_average(values, confidence, scale_of(name))
            elif len(values) == 1:
                value = values[0]
                if name in stat_columns:
                    lo, hi = kept[0][f"{name}_lo"], kept[0][f"{name}_hi"]
            agg[name], agg[f"{name}_lo"], agg[f"{name}_hi"] = float(value), float(lo), float(hi)
        out.append({c: agg[c] for c in by_model_columns((*plain_columns, *stat_columns))})
    return out


def aggregate_curvature(rows: Sequence[dict], confidence: float) -> list[dict]:
    """The curvature table per model (:data:`CURVATURE_BY_MODEL_COLUMNS`), seeds averaged."""
    return aggregate_by_model(rows, confidence, CURVATURE_STAT_COLUMNS, ())
