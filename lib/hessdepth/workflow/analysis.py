"""The per-checkpoint analyses the workflow runs: SLQ, Hutchinson moments, gradient norms, and
the Hutchinson moments of parts of the curvature (blocks, Gauss-Newton).

:func:`run_analysis` (one per Hessian rule, by its name) and :func:`run_gradnorms` read a
checkpoint and the dataset, build the Hessian operator of the configured loss, compute, and
write one HDF5 file whose attributes say what it is (model, step, seed, dataset, BN mode,
dtype, settings). Lanczos and Hutchinson save each finished
probe in a :class:`ProbeStore` beside the output and resume from it after a kill.
A checkpoint of a diverged model gets an output of NaNs marked ``diverged``, so the rest of the
workflow goes on and marks it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..curvature import GaussNewtonOperator, block
from ..data import balanced_subset, fixed_batches, read_dataset_h5
from ..device import choose_device
from ..gradnorms import per_variable_norms
from ..h5io import DIGEST, OutputError, atomic_h5, check_identity, rebuild_hint, string_array, write_attrs
from ..lanczos import slq
from ..models import resnet_blocks
from ..moments import hutchinson_moments
from ..hessian import HessianOperator
from ..identity import COPIED
from ..hvp import DEFAULT_GRAPH_CACHE_GB
from ..probes import DEFAULT_LOCKSTEP
from ..probestore import ProbeStore
from ..checkpoints import load_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How a Hessian job runs, never what it computes: not among its rule's params, so a change
    reruns nothing. Results agree to rounding whatever these are."""

    graph_cache_gb: float = DEFAULT_GRAPH_CACHE_GB  # keep each batch's first-order graph (hessdepth.hvp)
    lockstep: int | str = DEFAULT_LOCKSTEP  # SLQ probes per pass over the data (hessdepth.probes)
    progress: bool = True  # tqdm bars on stderr


OPERATOR_SETTINGS = ("samples", "subset_seed", "batch_size", "bn_mode", "dtype", "device")
LANCZOS_SETTINGS = ("iterations", "probes", "probe_kind", "seed")
PROBE_SETTINGS = ("probes", "seed")  # Hutchinson moments, of H or of its parts


def operator_settings(settings: dict, own: tuple[str, ...] = ()) -> dict:
    """The operator's part of a job's ``settings``. A key that is neither the operator's nor the
    job's ``own`` is an error: a misspelt setting is never silently dropped."""
    unknown = sorted(set(settings) - set(OPERATOR_SETTINGS) - set(own))
    if unknown:
        raise ValueError(f"unknown settings {unknown}: expected {OPERATOR_SETTINGS + own}")
    return {k: v for k, v in settings.items() if k in OPERATOR_SETTINGS}


def checkpoint_operator(
    checkpoint,
    data,
    *,
    samples,
    subset_seed,
    batch_size,
    bn_mode,
    dtype,
    device,
    graph_cache_gb=DEFAULT_GRAPH_CACHE_GB,
    expect: dict | None = None,
) -> tuple[HessianOperator, dict]:
    """The Hessian operator of a checkpoint's training loss over fixed, un-augmented batches.

    ``graph_cache_gb`` > 0: composition "auto" with that cache limit; 0: "double_backward".
    ``expect``: identity attributes the checkpoint must hold (e.g. model, seed, step).
    """
    device = choose_device(device)
    model, attrs = load_checkpoint(checkpoint, device=device)
    check_identity(checkpoint, attrs, expect)
    dataset, data_attrs = read_dataset_h5(data)
    if attrs.get("data_sha256", data_attrs["data_sha256"]) != data_attrs["data_sha256"]:
        raise OutputError(
            f"{data} is not the data {checkpoint} was trained on (data_sha256 {data_attrs['data_sha256']}, "
            f"the checkpoint's {attrs['data_sha256']}); {rebuild_hint(checkpoint)}"
        )
    attrs["upstream"] = {"checkpoint_sha256": attrs[DIGEST], "data_sha256": data_attrs["data_sha256"]}
    model = model.to(getattr(torch, dtype))
    images, labels = dataset.train_images, dataset.train_labels
    if samples:
        keep = balanced_subset(labels, samples, subset_seed)
        images, labels = images[keep], labels[keep]
    batches = fixed_batches(images, labels, batch_size, device, dtype=getattr(torch, dtype))
    op = HessianOperator(
        model,
        batches,
        bn_mode=bn_mode,
        graph_cache_gb=graph_cache_gb,
        composition="auto" if graph_cache_gb > 0 else "double_backward",
    )
    cache = (
        f" (first-order graphs {op.graph_bytes / 2**30:.2f} GiB, limit {graph_cache_gb:g} GiB)"
        if op.graph_bytes
        else ""
    )
    log.info(
        "%s step %s: Hessian of %d parameters over %d images in %d batches, bn_mode=%s, %s on %s, %s%s",
        attrs.get("model"),
        attrs.get("step"),
        op.num_params,
        op.num_samples,
        len(batches),
        bn_mode,
        dtype,
        device,
        op.composition,
        cache,
    )
    return op, attrs


def _digest(model: torch.nn.Module) -> str:
    """Identifies the parameters a probe store was computed at."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _output_attrs(op: HessianOperator, ckpt_attrs: dict, settings: dict) -> dict:
    attrs = {k: ckpt_attrs[k] for k in COPIED if k in ckpt_attrs}
    return {
        **attrs,
        "settings": settings,
        **ckpt_attrs["upstream"],
        "bn_mode": op.bn_mode,
        "dtype": str(op.dtype).removeprefix("torch."),
        "hessian_samples": op.num_samples,
        "composition": op.composition,
    }


def _checked(op) -> dict:
    """Symmetry and repeatability of the operator (4 products); raises with the usual causes."""
    return {"symmetry_error": op.check_symmetry(), "repeatability_error": op.check_repeatability()}


@dataclass
class Result:
    """What an analysis writes: attributes beside the run's, root datasets, and groups (name ->
    (datasets, attributes))."""

    attrs: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    groups: dict[str, tuple[dict[str, np.ndarray], dict]] = field(default_factory=dict)


# --- SLQ ------------------------------------------------------------------------------------------
def lanczos(op: HessianOperator, settings: dict, store: ProbeStore, options: RunOptions) -> Result:
    """SLQ: per probe the tridiagonal, Gauss nodes and weights (ARCHITECTURE.md), each probe saved
    in ``store`` as it finishes and read back from it after a kill."""
    m, probes = settings["iterations"], settings["probes"]
    checks = _checked(op)
    todo = store.missing(range(probes))
    if todo:
        slq(
            op,
            iterations=m,
            probes=probes,
            seed=settings["seed"],
            kind=settings["probe_kind"],
            lockstep=options.lockstep,
            indices=todo,
            callback=store.save,
            progress=options.progress,
        )
    rows = [store.rows[i] for i in range(probes)]
    steps = np.array([int(r["steps"]) for r in rows])
    log.info("Lanczos lengths %s", sorted(set(steps.tolist())))
    return Result(
        {
            **checks,
            "iterations": m,
            "probes": probes,
            "probe_kind": settings["probe_kind"],
            "seed_probes": settings["seed"],
            "breakdown": bool((steps < m).any()),
        },
        {name: np.stack([np.asarray(r[name]) for r in rows]) for name in LANCZOS_ARRAYS},
    )


LANCZOS_ARRAYS = ("alpha", "beta", "nodes", "weights", "steps", "seconds")


def lanczos_diverged(op, settings: dict) -> Result:
    m, probes = settings["iterations"], settings["probes"]
    nan = np.full((probes, m), np.nan)
    arrays = dict(
        alpha=nan,
        beta=nan[:, :-1],
        nodes=nan,
        weights=np.zeros_like(nan),
        steps=np.zeros(probes, np.int64),
        seconds=np.zeros(probes),
    )
    return Result({"iterations": m, "probes": probes, "breakdown": False}, arrays)


# --- Hutchinson moments of H, or of parts of the curvature ------------------------------------------
def _moment_arrays(values: np.ndarray) -> dict[str, np.ndarray]:
    """``probe_values`` (P, 4), their mean ``estimate`` and its standard error ``stderr``."""
    return {
        "probe_values": values,
        "estimate": values.mean(axis=0),
        "stderr": values.std(axis=0, ddof=1) / np.sqrt(len(values)),
    }


def _probe_moments(parts: dict, settings: dict, store: ProbeStore, progress: bool) -> dict[str, np.ndarray]:
    """Per-probe Hutchinson moments (P, 4) of each operator in ``parts``, all with the probes of
    ``settings["seed"]``; operator k's probe i is saved in ``store`` as row k * P + i."""
    probes = settings["probes"]
    for k, part in enumerate(parts.values()):
        todo = [i for i in range(probes) if k * probes + i not in store.rows]
        if todo:
            hutchinson_moments(
                part,
                probes=probes,
                seed=settings["seed"],
                indices=todo,
                progress=progress,
                callback=lambda i, row, k=k: store.save(k * probes + i, row),
            )
    return {
        name: np.stack([np.asarray(store.rows[k * probes + i]["values"]) for i in range(probes)])
        for k, name in enumerate(parts)
    }


def _probe_attrs(settings: dict) -> dict:
    return {"probes": settings["probes"], "seed_probes": settings["seed"]}


def moments(op: HessianOperator, settings: dict, store: ProbeStore, options: RunOptions) -> Result:
    """Hutchinson estimates of (1/n) tr(H^k), k = 1..4, with per-probe values and standard errors."""
    checks = _checked(op)
    values = _probe_moments({"hessian": op}, settings, store, options.progress)["hessian"]
    log.info("(1/n)tr(H^k) = %s", values.mean(axis=0))
    return Result({**_probe_attrs(settings), **checks}, _moment_arrays(values))


def moments_diverged(op, settings: dict) -> Result:
    return Result(_probe_attrs(settings), _moment_arrays(np.full((settings["probes"], 4), np.nan)))


def _block_parts(op: HessianOperator) -> dict:
    """The diagonal blocks of H by :func:`hessdepth.resnet_blocks` (input, stages, classifier),
    each with its ``prefixes``."""
    return {name: (block(op, p), {"prefixes": list(p)}) for name, p in resnet_blocks().items()}


def _gauss_newton_parts(op: HessianOperator) -> dict:
    """The Hessian and its Gauss-Newton part, to be probed with the same vectors (paired)."""
    return {"hessian": (op, {}), "gauss_newton": (GaussNewtonOperator(op.model, op.batches, bn_mode=op.bn_mode), {})}


def _parts_result(parts: dict, settings: dict, values: dict, checks: dict) -> Result:
    """One group per part A (name -> (operator, group attributes)): ``probe_values`` (P, 4) =
    v'A^k v / n_A, ``estimate``, ``stderr``, attributes ``dimension`` n_A and the part's own."""
    groups = {
        name: (_moment_arrays(values[name]), {"dimension": part.num_params, **part_attrs})
        for name, (part, part_attrs) in parts.items()
    }
    return Result({**_probe_attrs(settings), **checks, "parts": list(parts)}, groups=groups)


def _part_moments(make_parts, check_parts: bool):
    """The analysis of the parts ``make_parts(op)`` makes, and the one of a diverged checkpoint;
    with ``check_parts`` every part but H is checked too (named ``{part}_{check}``)."""

    def analysis(op: HessianOperator, settings: dict, store: ProbeStore, options: RunOptions) -> Result:
        parts = make_parts(op)
        checks = _checked(op)
        if check_parts:
            for name, (part, _) in parts.items():
                if part is not op:
                    checks |= {f"{name}_{k}": v for k, v in _checked(part).items()}
        values = _probe_moments({name: part for name, (part, _) in parts.items()}, settings, store, options.progress)
        log.info("(1/n)tr(A^k): %s", "; ".join(f"{name} {v.mean(axis=0)}" for name, v in values.items()))
        return _parts_result(parts, settings, values, checks)

    def diverged(op, settings: dict) -> Result:
        parts = make_parts(op)
        return _parts_result(parts, settings, {name: np.full((settings["probes"], 4), np.nan) for name in parts}, {})

    return analysis, diverged


@dataclass(frozen=True)
class Analysis:
    """A Hessian rule's analysis: its own settings beside the operator's, what it computes from
    (operator, settings, probe store, run options), what a diverged checkpoint gets, and the parts
    (if any) its probe store is keyed by."""

    own: tuple[str, ...]
    compute: Callable[[HessianOperator, dict, ProbeStore, RunOptions], Result]
    diverged: Callable[[HessianOperator, dict], Result]
    parts: tuple[str, ...] | None = None


BLOCK_MOMENTS = _part_moments(_block_parts, check_parts=False)
GAUSS_NEWTON = _part_moments(_gauss_newton_parts, check_parts=True)
# analysis (a rule's name) -> what it is
ANALYSES = {
    "lanczos": Analysis(LANCZOS_SETTINGS, lanczos, lanczos_diverged),
    "moments": Analysis(PROBE_SETTINGS, moments, moments_diverged, ("hessian",)),
    "block_moments": Analysis(PROBE_SETTINGS, *BLOCK_MOMENTS, tuple(resnet_blocks())),
    "gauss_newton": Analysis(PROBE_SETTINGS, *GAUSS_NEWTON, ("hessian", "gauss_newton")),
}


def _write(out: Path, attrs: dict, result: Result) -> None:
    with atomic_h5(out, {**attrs, **result.attrs}) as f:
        for name, value in result.arrays.items():
            f[name] = value
        for name, (arrays, group_attrs) in result.groups.items():
            group = f.create_group(name)
            for key, value in arrays.items():
                group[key] = value
            write_attrs(group, group_attrs)


def run_analysis(
    analysis: str,
    checkpoint,
    data,
    out,
    settings: dict,
    options: RunOptions = RunOptions(),
    expect: dict | None = None,
) -> None:
    """One checkpoint's Hessian ``analysis`` (a key of :data:`ANALYSES`) written to ``out``.

    ``settings`` are the operator's and the analysis's own (a misspelt key is an error);
    ``expect``: identity the checkpoint must hold (model, seed, step its path stands for). A
    diverged checkpoint gets the analysis's NaN result marked ``diverged``. Otherwise each finished
    probe is kept in a probe store beside ``out`` until ``out`` is written, so a killed job resumes.
    """
    if analysis not in ANALYSES:
        raise ValueError(f"unknown analysis {analysis!r}: expected one of {sorted(ANALYSES)}")
    spec = ANALYSES[analysis]
    op, ckpt = checkpoint_operator(
        checkpoint, data, graph_cache_gb=options.graph_cache_gb, expect=expect, **operator_settings(settings, spec.own)
    )
    out = Path(out)
    attrs = _output_attrs(op, ckpt, settings)
    if ckpt.get("diverged"):
        log.warning("model diverged: writing a NaN %s result marked diverged", analysis)
        _write(out, attrs, spec.diverged(op, settings))
        return
    key = settings if spec.parts is None else {**settings, "parts": list(spec.parts)}
    store = ProbeStore(out.with_name(f".{out.name}.probes.h5"), {**key, "params": _digest(op.model)})
    _write(out, attrs, spec.compute(op, settings, store, options))
    store.remove()
    log.info("wrote %s", out)


def run_gradnorms(checkpoint, data, out, settings: dict, expect: dict | None = None) -> None:
    """Per-variable norms of the full training-set gradient (the paper's figure 1)."""
    start = time.perf_counter()
    op, ckpt = checkpoint_operator(  # a gradient needs no first-order graph kept
        checkpoint, data, subset_seed=0, dtype="float32", graph_cache_gb=0, expect=expect, **operator_settings(settings)
    )
    attrs = _output_attrs(op, ckpt, settings)
    names, norms, numel = per_variable_norms(op.model, op.gradient())
    with atomic_h5(out, {**attrs, "loss": op.loss()}) as f:
        f["names"], f["norms"], f["numel"] = string_array(names), norms, numel
    log.info("wrote %s: %d variables in %.1f s", out, len(names), time.perf_counter() - start)
