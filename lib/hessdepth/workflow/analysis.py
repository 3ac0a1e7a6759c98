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
from pathlib import Path

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
from ..hvp import DEFAULT_GRAPH_CACHE_GB
from ..probestore import ProbeStore
from ..checkpoints import load_checkpoint

log = logging.getLogger(__name__)

_IDENTITY = (
    "dataset",
    "synthetic",
    "model",
    "arch",
    "depth",
    "width",
    "seed",
    "step",
    "n_params",
    "diverged",
    "train_loss",
    "train_acc",
)


OPERATOR_SETTINGS = ("samples", "subset_seed", "batch_size", "bn_mode", "dtype", "device")
LANCZOS_SETTINGS = ("iterations", "probes", "probe_kind", "seed", "block")
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
    attrs = {k: ckpt_attrs[k] for k in _IDENTITY if k in ckpt_attrs}
    return {
        **attrs,
        "settings": settings,
        **ckpt_attrs["upstream"],
        "bn_mode": op.bn_mode,
        "dtype": str(op.dtype).removeprefix("torch."),
        "hessian_samples": op.num_samples,
        "composition": op.composition,
    }


def _checked(op: HessianOperator) -> dict:
    """Symmetry and repeatability of the operator (4 products); raises with the usual causes."""
    return {"symmetry_error": op.check_symmetry(), "repeatability_error": op.check_repeatability()}


def _store(out: Path, settings: dict, op: HessianOperator) -> ProbeStore:
    return ProbeStore(out.with_name(f".{out.name}.probes.h5"), {**settings, "params": _digest(op.model)})


def _lanczos(out: Path, op: HessianOperator, ckpt: dict, attrs: dict, settings: dict, progress: bool) -> None:
    """SLQ: per probe the tridiagonal, Gauss nodes and weights; see ARCHITECTURE.md."""
    m, probes = settings["iterations"], settings["probes"]
    if ckpt.get("diverged"):
        log.warning("model diverged: writing a NaN spectrum marked diverged")
        nan = np.full((probes, m), np.nan)
        with atomic_h5(out, {**attrs, "iterations": m, "probes": probes, "breakdown": False}) as f:
            for name, value in dict(
                alpha=nan,
                beta=nan[:, :-1],
                nodes=nan,
                weights=np.zeros_like(nan),
                steps=np.zeros(probes, np.int64),
                seconds=np.zeros(probes),
            ).items():
                f[name] = value
        return
    checks = _checked(op)
    store = _store(out, settings, op)
    todo = store.missing(range(probes))
    if todo:
        slq(
            op,
            iterations=m,
            probes=probes,
            seed=settings["seed"],
            kind=settings["probe_kind"],
            block=settings["block"],
            indices=todo,
            callback=store.save,
            progress=progress,
        )
    rows = [store.rows[i] for i in range(probes)]
    steps = np.array([int(r["steps"]) for r in rows])
    with atomic_h5(
        out,
        {
            **attrs,
            **checks,
            "iterations": m,
            "probes": probes,
            "probe_kind": settings["probe_kind"],
            "seed_probes": settings["seed"],
            "breakdown": bool((steps < m).any()),
        },
    ) as f:
        for name in ("alpha", "beta", "nodes", "weights", "steps", "seconds"):
            f[name] = np.stack([np.asarray(r[name]) for r in rows])
    store.remove()
    log.info("wrote %s: %d probes, Lanczos lengths %s", out, probes, sorted(set(steps.tolist())))


def _probe_moments(out: Path, op, ckpt: dict, parts: dict, settings: dict, progress: bool):
    """Per-probe Hutchinson moments (P, 4) of each operator in ``parts``, all with the probes of
    ``settings["seed"]``, and the job's probe store (None for a diverged checkpoint, which gets
    NaNs). Operator k's probe i is saved in the store as row k * P + i as it finishes."""
    probes, seed = settings["probes"], settings["seed"]
    if ckpt.get("diverged"):
        log.warning("model diverged: writing NaN moments marked diverged")
        return {name: np.full((probes, 4), np.nan) for name in parts}, None
    store = _store(out, {**settings, "parts": list(parts)}, op)
    for k, part in enumerate(parts.values()):
        todo = [i for i in range(probes) if k * probes + i not in store.rows]
        if todo:
            hutchinson_moments(
                part,
                probes=probes,
                seed=seed,
                indices=todo,
                progress=progress,
                callback=lambda i, row, k=k: store.save(k * probes + i, row),
            )
    values = {
        name: np.stack([np.asarray(store.rows[k * probes + i]["values"]) for i in range(probes)])
        for k, name in enumerate(parts)
    }
    return values, store


def _write_moments(group, values: np.ndarray) -> None:
    """``probe_values`` (P, 4), their mean ``estimate`` and its standard error ``stderr``."""
    group["probe_values"], group["estimate"] = values, values.mean(axis=0)
    group["stderr"] = values.std(axis=0, ddof=1) / np.sqrt(len(values))


def _moments(out: Path, op: HessianOperator, ckpt: dict, attrs: dict, settings: dict, progress: bool) -> None:
    """Hutchinson estimates of (1/n) tr(H^k), k = 1..4, with per-probe values and standard errors."""
    probes, seed = settings["probes"], settings["seed"]
    checks = {} if ckpt.get("diverged") else _checked(op)
    values, store = _probe_moments(out, op, ckpt, {"hessian": op}, settings, progress)
    with atomic_h5(out, {**attrs, **checks, "probes": probes, "seed_probes": seed}) as f:
        _write_moments(f, values["hessian"])
    if store is not None:
        store.remove()
    log.info("wrote %s: (1/n)tr(H^k) = %s", out, values["hessian"].mean(axis=0))


def _parts(out: Path, op, ckpt: dict, attrs: dict, settings: dict, parts: dict, checks: dict, progress: bool) -> None:
    """One HDF5 group per part A of ``parts`` (name -> (operator, group attributes)):
    ``probe_values`` (P, 4) = v'A^k v / n_A, ``estimate``, ``stderr``, attributes ``dimension``
    n_A and the part's own; a diverged checkpoint gets NaNs. Resumes from the job's probe store."""
    probes, seed = settings["probes"], settings["seed"]
    operators = {name: part for name, (part, _) in parts.items()}
    values, store = _probe_moments(out, op, ckpt, operators, settings, progress)
    with atomic_h5(out, {**attrs, **checks, "probes": probes, "seed_probes": seed, "parts": list(parts)}) as f:
        for name, (part, part_attrs) in parts.items():
            group = f.create_group(name)
            _write_moments(group, values[name])
            write_attrs(group, {"dimension": part.num_params, **part_attrs})
    if store is not None:
        store.remove()
    log.info("wrote %s: (1/n)tr(A^k) of %s", out, "; ".join(f"{name} {v.mean(axis=0)}" for name, v in values.items()))


def _block_moments(out: Path, op: HessianOperator, ckpt: dict, attrs: dict, settings: dict, progress: bool) -> None:
    """Hutchinson moments of each diagonal block of H by :func:`hessdepth.resnet_blocks` (input,
    stages, classifier), one group per block (its ``prefixes`` in the group's attributes)."""
    parts = {name: (block(op, p), {"prefixes": list(p)}) for name, p in resnet_blocks().items()}
    checks = {} if ckpt.get("diverged") else _checked(op)
    _parts(out, op, ckpt, attrs, settings, parts, checks, progress)


def _gauss_newton(out: Path, op: HessianOperator, ckpt: dict, attrs: dict, settings: dict, progress: bool) -> None:
    """Hutchinson moments of the Hessian (group ``hessian``) and of its Gauss-Newton part
    (``gauss_newton``) from the same probes, so that their statistics are paired."""
    gn = GaussNewtonOperator(op.model, op.batches, bn_mode=op.bn_mode)
    checks = {}
    if not ckpt.get("diverged"):
        checks = {**_checked(op), **{f"gauss_newton_{k}": v for k, v in _checked(gn).items()}}
    _parts(out, op, ckpt, attrs, settings, {"hessian": (op, {}), "gauss_newton": (gn, {})}, checks, progress)


# analysis (a rule's name) -> (its own settings beside the operator's, what computes and writes it)
ANALYSES = {
    "lanczos": (LANCZOS_SETTINGS, _lanczos),
    "moments": (PROBE_SETTINGS, _moments),
    "block_moments": (PROBE_SETTINGS, _block_moments),
    "gauss_newton": (PROBE_SETTINGS, _gauss_newton),
}


def run_analysis(
    analysis: str,
    checkpoint,
    data,
    out,
    settings: dict,
    progress: bool = True,
    graph_cache_gb: float = DEFAULT_GRAPH_CACHE_GB,
    expect: dict | None = None,
) -> None:
    """One checkpoint's Hessian ``analysis`` (a key of :data:`ANALYSES`) written to ``out``.

    ``settings`` are the operator's and the analysis's own (a misspelt key is an error);
    ``expect``: identity the checkpoint must hold (model, seed, step its path stands for).
    """
    if analysis not in ANALYSES:
        raise ValueError(f"unknown analysis {analysis!r}: expected one of {sorted(ANALYSES)}")
    own, compute = ANALYSES[analysis]
    op, ckpt = checkpoint_operator(
        checkpoint, data, graph_cache_gb=graph_cache_gb, expect=expect, **operator_settings(settings, own)
    )
    compute(Path(out), op, ckpt, _output_attrs(op, ckpt, settings), settings, progress)


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
