"""The checkpoint and training-curve file formats: what training writes and readers import.

A checkpoint holds a model's parameters and BN buffers after some number of SGD updates, with
its losses and accuracies; a curve holds the training loss/accuracy over the steps and the
checkpoints' test metrics. Layouts in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .h5io import atomic_h5, open_checked, read_json_attr
from .identity import NET
from .models import build_model, count_params, model_id

# what every checkpoint holds: its net, its run, how training went, and the training settings
CHECKPOINT_ATTRS = (
    *NET,
    "step",
    "seed",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "diverged",
    "diverged_at",
    "config",
)
CURVE_DATASETS = ("train/step", "train/loss", "train/acc", "train/lr", "test/step", "test/loss", "test/acc")


def model_attrs(model: nn.Module) -> dict:
    """The attributes that name a CIFAR net in every file made from it."""
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


def write_checkpoint(path: os.PathLike | str, state: dict[str, torch.Tensor], attrs: dict) -> None:
    """Write a model's ``state_dict`` (CPU tensors) and its attributes, atomically."""
    with atomic_h5(Path(path), attrs) as f:
        for name, tensor in state.items():
            f.create_dataset(f"state/{name}", data=tensor.numpy())


def write_curve(path: os.PathLike | str, curve: dict[str, list], attrs: dict) -> None:
    """Write the curve's lists (keys as :data:`CURVE_DATASETS`) and its attributes, atomically."""
    with atomic_h5(Path(path), attrs) as f:
        for name in CURVE_DATASETS:
            dtype = np.int64 if name.endswith("step") else np.float64
            f.create_dataset(name, data=np.asarray(curve[name], dtype=dtype))


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def load_checkpoint(path: os.PathLike | str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint (in train mode, on ``device``) and return it with its attributes."""
    with open_checked(path, datasets=("state",), attrs=CHECKPOINT_ATTRS) as f:
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
