"""SGD training of the CIFAR nets: the loop, with checkpoints, a curve, snapshots and NaN handling.

The recipe is He et al. (2016, section 4.2), the same for ``resnet`` and ``simple`` nets:
batch 128, SGD with momentum 0.9, weight decay 1e-4 on every parameter (BatchNorm included),
lr 0.1 divided by 10 at 50% and 75% of the steps (their 32k and 48k of 64k), optional linear
warm-up, 4-pixel zero-padded random crops and horizontal flips (:mod:`.batches`). Ghorbani
et al. train the same way for 100k steps. The model's initial weights are the caller's: build
them with :func:`seeded_model`.

Outputs: a checkpoint per requested step and the curve (formats in :mod:`.checkpoints`), and a
snapshot every ``snapshot_every`` steps, removed when training finishes (:mod:`.snapshots`),
which makes a rerun after a kill bitwise identical on the CPU (same thread count; on CUDA only
cuDNN convolutions are made deterministic). Progress lines go to this module's logger.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
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
from tqdm.contrib.logging import logging_redirect_tqdm

from .batches import Sampler, augment
from .checkpoints import CHECKPOINT_ATTRS, CURVE_DATASETS, model_attrs, write_checkpoint, write_curve
from .data import CifarData, normalize
from .device import deterministic
from .models import build_model
from .snapshots import data_digest, load_snapshot, rng_states, save_snapshot, set_rng_states

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss, parameters or BN statistics became NaN/Inf (with ``on_divergence="error"``)."""


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
        problems = train_problems(dataclasses.asdict(self))
        if problems:
            raise ValueError("; ".join(problems))


_COUNTS = ("steps", "batch_size", "log_every", "snapshot_every", "eval_batch_size")
_NUMBERS = {  # name -> (its rule, what the rule asks)
    "lr": (lambda v: v > 0, "a number > 0"),
    "lr_decay": (lambda v: v > 0, "a number > 0"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "momentum": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
}


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def train_problems(settings: Mapping) -> list[str]:
    """What is wrong with training ``settings`` (TrainConfig's fields, or config.yaml's ``train:``
    keys), every problem at once: the one place their bounds and schedule rules are written. Keys
    that are absent are not checked; a value of the wrong type is reported, and the rules that need
    it are skipped."""
    get, problems = settings.get, []
    for name in _COUNTS:
        if name in settings and not _is_count(get(name)):
            problems.append(f"train.{name}: {get(name)!r} must be an integer >= 1")
    for name, (rule, what) in _NUMBERS.items():
        if name in settings and not (_is_number(get(name)) and rule(get(name))):
            problems.append(f"train.{name}: {get(name)!r} must be {what}")
    milestones = get("lr_milestones", ())
    if not isinstance(milestones, (list, tuple)) or any(not _is_number(m) or not 0 < m < 1 for m in milestones):
        problems.append(f"train.lr_milestones: {milestones!r} must be a list of fractions of train.steps in (0, 1)")
    elif any(b <= a for a, b in zip(milestones, milestones[1:])):
        problems.append(
            f"train.lr_milestones: {list(milestones)} must increase (fractions of train.steps at which lr is "
            f"multiplied by lr_decay); write {sorted(set(milestones))}"
        )
    steps, warmup, log_every = get("steps", 1), get("warmup_steps", 0), get("log_every", 1)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        problems.append(f"train.warmup_steps: {warmup!r} must be an integer >= 0 (0: no warm-up)")
    elif _is_count(steps) and warmup >= steps:
        problems.append(
            f"train.warmup_steps: {warmup} is not shorter than the training (train.steps = {steps}), "
            f"so the learning rate never reaches train.lr; lower it below {steps} (0: no warm-up)"
        )
    if _is_count(steps) and _is_count(log_every) and log_every > steps:
        problems.append(
            f"train.log_every: {log_every} is more than train.steps = {steps}, so the training curve "
            f"would have no point; lower it to at most {steps}"
        )
    if get("on_divergence", "error") not in ("error", "record"):
        problems.append(f"train.on_divergence: {get('on_divergence')!r} must be 'error' or 'record'")
    return problems


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


def _checkpoint_plan(steps: Iterable[int], path: Mapping | Callable, total: int) -> dict[int, Path]:
    plan = {}
    for step in sorted(set(steps)):
        if not isinstance(step, (int, np.integer)) or not 0 <= step <= total:
            raise ValueError(f"checkpoint steps must be integers in [0, {total}], got {step!r}")
        if isinstance(path, Mapping) and step not in path:
            raise ValueError(f"checkpoint_path has no path for checkpoint step {step}")
        plan[int(step)] = Path(path[step] if isinstance(path, Mapping) else path(step))
    return plan


class _Run:
    """The state of one training run and the operations on it (step, log, checkpoint, snapshot)."""

    def __init__(self, model, data, cfg, *, checkpoints: dict[int, Path], seed: int, device, attrs: dict | None):
        self.model, self.cfg, self.checkpoints, self.device = model, cfg, checkpoints, device
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.to(device=device, memory_format=self.memory_format).train()
        self.forward = torch.compile(model) if cfg.compile else model
        # parameters and BN statistics, restored from a copy when an update turns out non-finite
        self.state = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.state_before = [t.clone() for t in self.state]
        self.opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.sampler = Sampler(len(data.train_labels), cfg.batch_size, seed)
        self.train_images = torch.from_numpy(data.train_images).to(device)
        self.train_labels = torch.from_numpy(data.train_labels).to(device)
        self.test_images = torch.from_numpy(data.test_images).to(device)
        self.test_labels = torch.from_numpy(data.test_labels).to(device)
        self.attrs = {**model_attrs(model), "seed": seed, "config": dataclasses.asdict(cfg), **(attrs or {})}
        self.identity = {  # what a snapshot must match to be resumed by this run
            "model": self.attrs["model"],
            "width": self.attrs["width"],
            "seed": seed,
            "config": json.dumps(self.attrs["config"]),
            "attrs": json.dumps(attrs or {}, sort_keys=True, default=str),
            "data": data_digest(data),
            "checkpoint steps": sorted(checkpoints),
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
        """Add the mean loss and accuracy since the last log to the curve, and log them."""
        loss_sum, correct, batches = self.window
        loss, acc, lr = loss_sum / batches, correct / (batches * self.cfg.batch_size), lr_at(self.cfg, self.step - 1)
        for name, value in (("train/step", self.step), ("train/loss", loss), ("train/acc", acc), ("train/lr", lr)):
            self.curve[name].append(value)
        self.window = [0.0, 0.0, 0]
        speed = batches * self.cfg.batch_size / max(seconds, 1e-9)
        log.info("step %d/%d lr %.4g loss %.4f acc %.4f (%.0f img/s)", self.step, self.cfg.steps, lr, loss, acc, speed)
        return f"{loss:.4f}"

    def stop_diverged(self, snapshot: Path | None) -> None:
        """After a non-finite update: raise :class:`TrainingDiverged`, or record where it happened."""
        lr = lr_at(self.cfg, self.step)
        if self.cfg.on_divergence == "error":
            kept = f"; the last good snapshot {snapshot} is kept" if snapshot and snapshot.exists() else ""
            raise TrainingDiverged(
                f"training diverged at step {self.step} (lr {lr:g}): NaN/Inf loss, parameters or BN statistics{kept}. "
                "Lower the learning rate or add warm-up steps, or set on_divergence: record "
                "to mark the model diverged and go on"
            )
        self.diverged_at = self.step
        log.info(
            "diverged at step %d (lr %g): NaN/Inf loss, parameters or BN statistics; "
            "writing the remaining checkpoints with the last finite parameters, marked diverged",
            self.step,
            lr,
        )

    # -- checkpoints and curve ---------------------------------------------------------------
    def _divergence_attrs(self) -> dict:
        return {
            "diverged": self.diverged_at is not None,
            "diverged_at": -1 if self.diverged_at is None else self.diverged_at,
        }

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
            **self._divergence_attrs(),
        }
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()}
        write_checkpoint(self.checkpoints[step], state, attrs)
        self.done[step] = {"state": state, "attrs": attrs}
        for name, value in (("test/step", step), ("test/loss", test_loss), ("test/acc", test_acc)):
            self.curve[name].append(value)
        log.info(
            "checkpoint step %d: train loss %.4f acc %.4f, test loss %.4f acc %.4f -> %s",
            step,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            self.checkpoints[step],
        )

    def write_curve(self, path: Path) -> None:
        write_curve(path, self.curve, {**self.attrs, "step": self.cfg.steps, **self._divergence_attrs()})

    # -- snapshots ---------------------------------------------------------------------------
    def save_snapshot(self, path: Path) -> None:
        save_snapshot(
            path,
            {
                "identity": self.identity,
                "step": self.step,
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "sampler": self.sampler.state_dict(),
                "rng": rng_states(),
                "curve": self.curve,
                "window": self.window,
                "done": self.done,
            },
        )

    def resume(self, path: Path) -> int | None:
        """Load the snapshot if there is one; rewrite the checkpoints it has that are missing on disk."""
        snap = load_snapshot(path, self.identity)
        if snap is None:
            return None
        self.model.load_state_dict(snap["model"])
        self.opt.load_state_dict(snap["optimizer"])
        self.sampler.load_state_dict(snap["sampler"])
        set_rng_states(snap["rng"])
        self.step, self.curve, self.window, self.done = snap["step"], snap["curve"], snap["window"], snap["done"]
        for step, ckpt in self.done.items():
            if not self.checkpoints[step].exists():
                write_checkpoint(self.checkpoints[step], ckpt["state"], ckpt["attrs"])
        log.info("resuming from step %d (%s)", self.step, path)
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
    :class:`~hessdepth.snapshots.SnapshotError`), rewriting any of its checkpoints that are
    missing on disk. ``attrs`` (e.g. ``{"dataset": ...}``) are added to every output file. The
    tqdm bar shows only on a terminal; log lines go to ``logging`` (above the bar). On a NaN/Inf
    loss, parameter or BN statistic: ``on_divergence="error"`` raises :class:`TrainingDiverged`
    (snapshot kept); ``"record"`` stops and writes the remaining checkpoints with the last
    finite state, marked ``diverged=True`` with ``diverged_at`` (the step of that state).
    """
    device = torch.device(device)
    checkpoints = _checkpoint_plan(checkpoint_steps, checkpoint_path, cfg.steps)
    clash = set(attrs or {}) & set(CHECKPOINT_ATTRS)
    if clash:
        raise ValueError(f"attrs may not override the checkpoint attributes {sorted(clash)}")
    snapshot = None if snapshot_path is None else Path(snapshot_path)
    run = _Run(model, data, cfg, checkpoints=checkpoints, seed=seed, device=device, attrs=attrs)
    with deterministic(device), logging_redirect_tqdm():
        # start: from the last snapshot if there is one; checkpoint 0 is the initial weights
        resumed_from = run.resume(snapshot) if snapshot else None
        if 0 in checkpoints and 0 not in run.done:
            run.write_checkpoint(0)
        bar = tqdm(
            total=cfg.steps,
            initial=run.step,
            unit="step",
            file=sys.stderr,
            disable=None if progress else True,
            dynamic_ncols=True,
        )
        with bar:
            tic = time.perf_counter()
            while run.step < cfg.steps:
                # one SGD update; a non-finite one is undone and ends training
                if not run.train_step():
                    run.stop_diverged(snapshot)
                    break
                bar.update()
                # the loss of the last log_every steps, checkpoints and snapshots when they are due
                if run.step % cfg.log_every == 0:
                    bar.set_postfix(loss=run.log_window(time.perf_counter() - tic))
                    tic = time.perf_counter()
                if run.step in checkpoints:
                    run.write_checkpoint(run.step)
                if snapshot and run.step % cfg.snapshot_every == 0 and run.step < cfg.steps:
                    run.save_snapshot(snapshot)
        # finish: the last partial window, the checkpoints a divergence left unwritten, the curve
        if run.window[2]:
            run.log_window(time.perf_counter() - tic)
        for step in checkpoints:
            if step not in run.done:
                run.write_checkpoint(step)
        run.write_curve(Path(curve_path))
    if snapshot:
        snapshot.unlink(missing_ok=True)
    return TrainResult(
        run.step, run.diverged_at is not None, run.diverged_at, resumed_from, checkpoints, Path(curve_path)
    )
