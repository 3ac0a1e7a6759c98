"""SGD training of the CIFAR nets: checkpoints, a training curve, exact resume, NaN handling.

The recipe is He et al. (2016, section 4.2), the same for ``resnet`` and ``simple`` nets:
batch 128, SGD with momentum 0.9, weight decay 1e-4 on every parameter (BatchNorm included),
lr 0.1 divided by 10 at 50% and 75% of the steps (their 32k and 48k of 64k), optional linear
warm-up, 4-pixel zero-padded random crops and horizontal flips. Ghorbani et al. train the
same way for 100k steps.

Sampling: epoch permutations of the training set from a CPU ``torch.Generator`` seeded by
``seed`` (an epoch's remainder smaller than a batch is skipped); the crop offsets and flips
come from the same generator. The model's initial weights are the caller's: build them with
:func:`seeded_model`.

Outputs (layouts in docs/ARCHITECTURE.md):
- checkpoint per requested step: parameters and BN buffers after that many updates, with
  ``train_loss/train_acc`` on the whole un-augmented training set and ``test_loss/test_acc``
  on the test set, both with eval-mode BatchNorm;
- curve: the mean loss/accuracy of the training batches (augmented, train-mode BN) over every
  ``log_every`` steps, and the checkpoints' test metrics;
- snapshot (``torch.save``, every ``snapshot_every`` steps, removed when training finishes):
  all state needed to resume, which makes a rerun after a kill bitwise identical on the CPU
  (same thread count; on CUDA only cuDNN convolutions are made deterministic).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import CifarData, normalize
from .atomic import atomic_path, remove_stale_temps
from .h5io import atomic_h5, open_checked, read_json_attr
from .models import build_model, count_params, model_id

SNAPSHOT_FORMAT = 1
_CHECKPOINT_ATTRS = (
    "arch",
    "depth",
    "width",
    "num_classes",
    "model",
    "step",
    "seed",
    "n_params",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "diverged",
    "diverged_at",
    "config",
)
CURVE_DATASETS = ("train/step", "train/loss", "train/acc", "train/lr", "test/step", "test/loss", "test/acc")


class TrainingDiverged(RuntimeError):
    """The loss, parameters or BN statistics became NaN/Inf (with ``on_divergence="error"``)."""


class SnapshotError(RuntimeError):
    """A snapshot cannot be read or belongs to a different run."""


@dataclass
class TrainConfig:
    """Training hyperparameters; field names are the ``train:`` keys of config.yaml."""

    steps: int = 100_000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4  # He et al. (2016); applied to all parameters
    lr_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of steps
    lr_decay: float = 0.1  # lr factor at each milestone
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps
    augment: bool = True  # 4-pixel zero-padded random crop + horizontal flip
    log_every: int = 100  # curve point and log line every K steps
    snapshot_every: int = 1000  # resumable snapshot every K steps
    on_divergence: str = "error"  # "error" | "record"
    eval_batch_size: int = 1000  # batch size of the checkpoint evaluations
    channels_last: bool = False
    bf16_autocast: bool = False
    compile: bool = False

    def __post_init__(self):
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        for name in ("steps", "batch_size", "log_every", "snapshot_every", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.lr_decay <= 0 or self.weight_decay < 0 or not 0 <= self.momentum <= 1:
            raise ValueError("need lr > 0, lr_decay > 0, weight_decay >= 0 and 0 <= momentum <= 1")
        if any(not 0 < m < 1 for m in self.lr_milestones):
            raise ValueError(f"train.lr_milestones are fractions of steps in (0, 1), got {self.lr_milestones}")
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.on_divergence not in ("error", "record"):
            raise ValueError(f"train.on_divergence must be 'error' or 'record', got {self.on_divergence!r}")


@dataclass
class TrainResult:
    steps_done: int  # updates applied (cfg.steps unless diverged)
    diverged: bool
    diverged_at: int | None  # step whose parameters gave a non-finite loss or gradient
    resumed_from: int | None  # snapshot step this run started from
    checkpoints: dict[int, Path]
    curve_path: Path


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of the update from ``step`` to ``step + 1`` (steps count from 0)."""
    decays = sum(step >= round(m * cfg.steps) for m in cfg.lr_milestones)
    warmup = (step + 1) / cfg.warmup_steps if step < cfg.warmup_steps else 1.0
    return cfg.lr * cfg.lr_decay**decays * warmup


def seeded_model(arch: str, depth: int, width: int = 16, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """:func:`build_model` with initial weights drawn from ``seed`` (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, depth, width, num_classes)


def augment(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded images at ``offsets`` (B, 2) = (row, col) in [0, 2*pad],
    then a horizontal flip where ``flips`` (B,) is true; one gather for the whole batch."""
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device).expand(b, w)
    cols = offsets[:, 1, None] + torch.where(flips[:, None], w - 1 - cols, cols)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, h, w)


class _Sampler:
    """Epoch permutations and augmentation draws from one seeded CPU generator."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < batch_size:
            raise ValueError(f"training set of {n} images is smaller than batch_size {batch_size}")
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.empty(0, dtype=torch.int64), 0

    def indices(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.perm):
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        self.pos += self.batch_size
        return self.perm[self.pos - self.batch_size : self.pos]

    def crop_flip(self) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = torch.randint(0, 9, (self.batch_size, 2), generator=self.gen)
        return offsets, torch.randint(0, 2, (self.batch_size,), generator=self.gen).bool()

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.perm, self.pos = state["perm"], state["pos"]


def _log(message: str) -> None:
    """Training's progress lines: on stderr above the tqdm bar (a logging handler would tear the
    bar), so a notebook shows them without configuring logging; a workflow job's stderr is its log."""
    tqdm.write(message, file=sys.stderr)


@contextlib.contextmanager
def _deterministic(device: torch.device):
    """Deterministic kernels while training: all of them on the CPU, cuDNN convolutions on CUDA."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 1000,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode on uint8 ``images``."""
    was_training = model.training
    model.eval()
    loss, correct = torch.zeros((), dtype=torch.float64, device=images.device), 0
    for i in range(0, len(images), batch_size):
        x = normalize(images[i : i + batch_size]).contiguous(memory_format=memory_format)
        y = labels[i : i + batch_size]
        logits = model(x).float()
        loss += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return loss.item() / len(images), float(correct) / len(images)


def _model_attrs(model: nn.Module) -> dict:
    if not all(hasattr(model, a) for a in ("depth", "residual", "width", "fc")):
        raise TypeError("train() expects a CIFAR net from hessdepth.build_model / seeded_model")
    arch = "resnet" if model.residual else "simple"
    return {
        "arch": arch,
        "depth": model.depth,
        "width": model.width,
        "num_classes": model.fc.out_features,
        "model": model_id(arch, model.depth),
        "n_params": count_params(model),
    }


def _checkpoint_plan(steps: Iterable[int], path: Mapping | Callable, total: int) -> dict[int, Path]:
    plan = {}
    for step in sorted(set(steps)):
        if not isinstance(step, (int, np.integer)) or not 0 <= step <= total:
            raise ValueError(f"checkpoint steps must be integers in [0, {total}], got {step!r}")
        if isinstance(path, Mapping) and step not in path:
            raise ValueError(f"checkpoint_path has no path for checkpoint step {step}")
        plan[int(step)] = Path(path[step] if isinstance(path, Mapping) else path(step))
    return plan


def _data_digest(data: CifarData) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _write_checkpoint(path: Path, state: dict[str, torch.Tensor], attrs: dict) -> None:
    with atomic_h5(path, attrs) as f:
        for name, tensor in state.items():
            f.create_dataset(f"state/{name}", data=tensor.numpy())


def _write_curve(path: Path, curve: dict[str, list], attrs: dict) -> None:
    with atomic_h5(path, attrs) as f:
        for name in CURVE_DATASETS:
            dtype = np.int64 if name.endswith("step") else np.float64
            f.create_dataset(name, data=np.asarray(curve[name], dtype=dtype))


def _rng_states() -> dict:
    mt, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (mt, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss)  # weights_only-loadable
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    mt, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((mt, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])


class _Run:
    """The state of one training run and the operations on it (step, evaluate, save, resume)."""

    def __init__(self, model, data, cfg, plan, curve_path, snapshot_path, seed, device, attrs):
        self.model, self.cfg, self.plan, self.device = model, cfg, plan, device
        self.curve_path = Path(curve_path)
        self.snapshot_path = None if snapshot_path is None else Path(snapshot_path)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.to(device=device, memory_format=self.memory_format).train()
        self.forward = torch.compile(model) if cfg.compile else model
        # parameters and BN statistics, restored from a copy when an update turns out non-finite
        self.state = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.state_before = [t.clone() for t in self.state]
        self.opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.sampler = _Sampler(len(data.train_labels), cfg.batch_size, seed)
        self.train_images = torch.from_numpy(data.train_images).to(device)
        self.train_labels = torch.from_numpy(data.train_labels).to(device)
        self.test_images = torch.from_numpy(data.test_images).to(device)
        self.test_labels = torch.from_numpy(data.test_labels).to(device)
        self.attrs = {**_model_attrs(model), "seed": seed, "config": dataclasses.asdict(cfg), **(attrs or {})}
        self.identity = {  # what a snapshot must match to be resumed by this run
            "model": self.attrs["model"],
            "width": self.attrs["width"],
            "seed": seed,
            "config": json.dumps(self.attrs["config"]),
            "attrs": json.dumps(attrs or {}, sort_keys=True, default=str),
            "data": _data_digest(data),
            "checkpoint steps": sorted(plan),
        }
        self.step, self.diverged_at = 0, None
        self.curve = {name: [] for name in CURVE_DATASETS}
        self.window = [0.0, 0.0, 0]  # summed batch losses, correct predictions, batches since the last log
        self.done: dict[int, dict] = {}  # checkpoint step -> {"state", "attrs"}, kept for rewriting

    # -- training ------------------------------------------------------------------------
    def train_step(self) -> bool:
        """One SGD update; returns False, with the model as it was, where the loss or the updated
        parameters or BN statistics are not finite (one device sync per step)."""
        idx = self.sampler.indices().to(self.device)
        images, labels = self.train_images[idx], self.train_labels[idx]
        if self.cfg.augment:
            offsets, flips = self.sampler.crop_flip()
            images = augment(images, offsets.to(self.device), flips.to(self.device))
        x = normalize(images).contiguous(memory_format=self.memory_format)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, self.step)
        torch._foreach_copy_(self.state_before, self.state)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16_autocast):
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        max_abs = torch.nn.utils.get_total_norm(self.state, norm_type=float("inf"))  # NaN/Inf if any is
        correct = (logits.argmax(1) == labels).sum()
        loss_value, correct, max_abs = torch.stack([loss.detach(), correct.float(), max_abs.float()]).tolist()
        if not (np.isfinite(loss_value) and np.isfinite(max_abs)):
            torch._foreach_copy_(self.state, self.state_before)
            return False
        self.step += 1
        self.window = [self.window[0] + loss_value, self.window[1] + correct, self.window[2] + 1]
        return True

    def log_window(self, seconds: float) -> str:
        loss_sum, correct, batches = self.window
        loss, acc, lr = loss_sum / batches, correct / (batches * self.cfg.batch_size), lr_at(self.cfg, self.step - 1)
        for name, value in (("train/step", self.step), ("train/loss", loss), ("train/acc", acc), ("train/lr", lr)):
            self.curve[name].append(value)
        self.window = [0.0, 0.0, 0]
        speed = batches * self.cfg.batch_size / max(seconds, 1e-9)
        _log(f"step {self.step}/{self.cfg.steps} lr {lr:.4g} loss {loss:.4f} acc {acc:.4f} ({speed:.0f} img/s)")
        return f"{loss:.4f}"

    # -- checkpoints and curve ---------------------------------------------------------------
    def write_checkpoint(self, step: int) -> None:
        """Evaluate the current parameters and write them as the checkpoint of ``step``."""
        batch, fmt = self.cfg.eval_batch_size, self.memory_format
        train_loss, train_acc = evaluate(self.model, self.train_images, self.train_labels, batch, fmt)
        test_loss, test_acc = evaluate(self.model, self.test_images, self.test_labels, batch, fmt)
        attrs = {
            **self.attrs,
            "step": step,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "diverged": self.diverged_at is not None,
            "diverged_at": -1 if self.diverged_at is None else self.diverged_at,
        }
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()}
        _write_checkpoint(self.plan[step], state, attrs)
        self.done[step] = {"state": state, "attrs": attrs}
        for name, value in (("test/step", step), ("test/loss", test_loss), ("test/acc", test_acc)):
            self.curve[name].append(value)
        _log(
            f"checkpoint step {step}: train loss {train_loss:.4f} acc {train_acc:.4f}, "
            f"test loss {test_loss:.4f} acc {test_acc:.4f} -> {self.plan[step]}"
        )

    def write_curve(self) -> None:
        attrs = {
            **self.attrs,
            "step": self.cfg.steps,
            "diverged": self.diverged_at is not None,
            "diverged_at": -1 if self.diverged_at is None else self.diverged_at,
        }
        _write_curve(self.curve_path, self.curve, attrs)

    # -- snapshots ---------------------------------------------------------------------------
    def save_snapshot(self) -> None:
        snapshot = {
            "format": SNAPSHOT_FORMAT,
            "identity": self.identity,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": _rng_states(),
            "curve": self.curve,
            "window": self.window,
            "done": self.done,
            "threads": torch.get_num_threads(),
        }
        with atomic_path(self.snapshot_path) as tmp, open(tmp, "wb") as f:
            torch.save(snapshot, f)
            f.flush()
            os.fsync(f.fileno())

    def resume(self) -> int | None:
        """Load the snapshot if there is one; rewrite the checkpoints it has that are missing on disk."""
        path = self.snapshot_path
        if path is None:
            return None
        remove_stale_temps(path)  # left by a killed run
        if not path.exists():
            return None
        fix = f"delete it to train from step 0 (rm -f {path})"
        try:
            snap = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # any failure to unpickle means the file is unusable
            raise SnapshotError(f"{path}: unreadable training snapshot ({type(err).__name__}: {err}); {fix}") from err
        if not isinstance(snap, dict) or snap.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(f"{path}: not a hessdepth training snapshot of format {SNAPSHOT_FORMAT}; {fix}")
        if snap["identity"] != self.identity:
            differs = [k for k in self.identity if snap["identity"].get(k) != self.identity[k]]
            raise SnapshotError(
                f"{path}: snapshot of a different run (its {', '.join(differs)} differ from "
                f"this run's); restore the original settings and data, or {fix}"
            )
        if snap["threads"] != torch.get_num_threads():
            _log(
                f"warning: snapshot made with {snap['threads']} threads, resuming with {torch.get_num_threads()}: "
                "the result may differ from an uninterrupted run in the last bits"
            )
        self.model.load_state_dict(snap["model"])
        self.opt.load_state_dict(snap["optimizer"])
        self.sampler.load_state_dict(snap["sampler"])
        _set_rng_states(snap["rng"])
        self.step, self.curve, self.window, self.done = snap["step"], snap["curve"], snap["window"], snap["done"]
        for step, ckpt in self.done.items():
            if not self.plan[step].exists():
                _write_checkpoint(self.plan[step], ckpt["state"], ckpt["attrs"])
        _log(f"resuming from step {self.step} ({path})")
        return self.step


def train(
    model: nn.Module,
    data: CifarData,
    cfg: TrainConfig,
    checkpoint_steps: Iterable[int],
    checkpoint_path: Mapping[int, os.PathLike | str] | Callable[[int], os.PathLike | str],
    curve_path: os.PathLike | str,
    snapshot_path: os.PathLike | str | None,
    seed: int,
    device: torch.device | str = "cpu",
    attrs: dict | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` (in place) for ``cfg.steps`` SGD steps; see the module docstring.

    Writes a checkpoint at each of ``checkpoint_steps`` (0 = the initial weights) to
    ``checkpoint_path[step]`` / ``checkpoint_path(step)``, the curve at the end, and a snapshot
    every ``cfg.snapshot_every`` steps (None: no snapshots). Resumes from an existing snapshot
    made with the same model, seed, config, attrs, data and checkpoint steps (else
    :class:`SnapshotError`), rewriting any of its checkpoints that are missing on disk.
    ``attrs`` (e.g. ``{"dataset": ...}``) are added to every output file. The tqdm bar shows
    only on a terminal; log lines go to stderr. On a NaN/Inf loss, parameter or BN statistic:
    ``on_divergence="error"`` raises :class:`TrainingDiverged` (snapshot kept); ``"record"``
    stops and writes the remaining checkpoints with the last finite state, marked
    ``diverged=True`` with ``diverged_at`` (the step of that state).
    """
    device = torch.device(device)
    plan = _checkpoint_plan(checkpoint_steps, checkpoint_path, cfg.steps)
    clash = set(attrs or {}) & set(_CHECKPOINT_ATTRS)
    if clash:
        raise ValueError(f"attrs may not override the checkpoint attributes {sorted(clash)}")
    run = _Run(model, data, cfg, plan, curve_path, snapshot_path, seed, device, attrs)
    with _deterministic(device):
        resumed_from = run.resume()
        if 0 in plan and 0 not in run.done:
            run.write_checkpoint(0)
        bar = tqdm(
            total=cfg.steps,
            initial=run.step,
            unit="step",
            file=sys.stderr,
            disable=None if progress else True,
            dynamic_ncols=True,
        )
        tic = time.perf_counter()
        while run.step < cfg.steps:
            if not run.train_step():
                lr = lr_at(cfg, run.step)
                saved = run.snapshot_path and run.snapshot_path.exists()
                kept = f"; the last good snapshot {run.snapshot_path} is kept" if saved else ""
                if cfg.on_divergence == "error":
                    bar.close()
                    raise TrainingDiverged(
                        f"training diverged at step {run.step} (lr {lr:g}): NaN/Inf loss, parameters or "
                        f"BN statistics{kept}. "
                        "Lower the learning rate or add warm-up steps, or set on_divergence: record "
                        "to mark the model diverged and go on"
                    )
                run.diverged_at = run.step
                _log(
                    f"diverged at step {run.step} (lr {lr:g}): NaN/Inf loss, parameters or BN statistics; "
                    "writing the remaining checkpoints with the last finite parameters, marked diverged"
                )
                break
            bar.update()
            if run.step % cfg.log_every == 0:
                bar.set_postfix(loss=run.log_window(time.perf_counter() - tic))
                tic = time.perf_counter()
            if run.step in plan:
                run.write_checkpoint(run.step)
            if run.snapshot_path and run.step % cfg.snapshot_every == 0 and run.step < cfg.steps:
                run.save_snapshot()
        bar.close()
        if run.window[2]:
            run.log_window(time.perf_counter() - tic)
        for step in plan:
            if step not in run.done:
                run.write_checkpoint(step)
        run.write_curve()
    if run.snapshot_path:
        run.snapshot_path.unlink(missing_ok=True)
    return TrainResult(run.step, run.diverged_at is not None, run.diverged_at, resumed_from, dict(plan), run.curve_path)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def load_checkpoint(path: os.PathLike | str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint (in train mode, on ``device``) and return it with its attributes."""
    with open_checked(path, datasets=("state",), attrs=_CHECKPOINT_ATTRS) as f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        attrs["config"] = read_json_attr(f, "config")
        state = {k: torch.as_tensor(np.asarray(v[()])) for k, v in f["state"].items()}
    model = build_model(attrs["arch"], int(attrs["depth"]), int(attrs["width"]), int(attrs["num_classes"]))
    model.load_state_dict(state)
    return model.to(device), attrs


def read_curve(path: os.PathLike | str) -> tuple[dict[str, np.ndarray], dict]:
    """The curve's arrays (keys as :data:`CURVE_DATASETS`) and its attributes."""
    with open_checked(path, datasets=CURVE_DATASETS, attrs=("model", "seed", "diverged", "config")) as f:
        arrays = {name: f[name][()] for name in CURVE_DATASETS}
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        attrs["config"] = read_json_attr(f, "config")
    return arrays, attrs
