"""CIFAR-10 and a synthetic stand-in: the dataset, its HDF5 file, normalising, halves, batches.

The official archive is read and downloaded by :mod:`hessdepth.cifar_archive`.

Images are uint8 ``(N, 3, 32, 32)`` (channel-major RGB, as in the pickled CIFAR batches) and
labels int64 ``(N,)`` everywhere; :func:`normalize` turns images into float tensors with the
fixed CIFAR-10 channel statistics, whatever the dataset (the synthetic one included).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from .h5io import DIGEST, OutputError, atomic_h5, open_checked, read_json_attr, rebuild_hint

CIFAR10_TRAIN_IMAGES = 50_000

# Per-channel mean and standard deviation of the 50,000 CIFAR-10 training images, pixels scaled
# to [0, 1] (the usual constants; the often-copied std (0.2023, 0.1994, 0.2010) is not the pixel
# std). Fixed so that every dataset, subset and checkpoint sees the same input map.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_DATASET_ATTRS = ("dataset", "source", "md5", "synthetic")


class DataError(RuntimeError):
    """A dataset archive or download is missing, corrupt or not the expected file."""


@dataclass
class CifarData:
    """Images uint8 (N, 3, 32, 32), labels int64 (N,), and the class names."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]

    def __post_init__(self):
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
                raise ValueError(f"{split}_images must be uint8 (N, 3, 32, 32), got {images.dtype} {images.shape}")
            if labels.dtype != np.int64 or labels.shape != (len(images),):
                raise ValueError(f"{split}_labels must be int64 ({len(images)},), got {labels.dtype} {labels.shape}")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise ValueError(f"{split}_labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes")


def synthetic_dataset(n_train: int, n_test: int, seed: int, num_classes: int = 10) -> CifarData:
    """A learnable offline stand-in for CIFAR-10, deterministic by ``seed``.

    Class ``c`` is a sinusoidal grating with its own orientation, frequency and colour on a grey
    background; each image gets a random phase, a brightness shift and strong Gaussian pixel
    noise. A ResNet-8 reaches about 60% test accuracy in 100 steps (chance: 1/num_classes). The
    test set does not depend on ``n_train``.
    """
    if n_train < 1 or n_test < 1 or num_classes < 2:
        raise ValueError(f"need n_train, n_test >= 1 and num_classes >= 2, got {n_train}, {n_test}, {num_classes}")
    proto_seq, train_seq, test_seq = np.random.SeedSequence(seed).spawn(3)
    proto = np.random.default_rng(proto_seq)
    angle = np.pi * (np.arange(num_classes) + proto.uniform(0, 1, num_classes)) / num_classes
    freq = proto.uniform(1.0, 4.0, num_classes)  # cycles per image width
    colour = proto.uniform(-1.0, 1.0, (num_classes, 3))
    grid = np.arange(32) / 32.0

    def sample(n: int, seq: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seq)
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        phase = rng.uniform(0, 2 * np.pi, n)
        a, f = angle[labels], freq[labels]
        proj = np.cos(a)[:, None, None] * grid[None, None, :] + np.sin(a)[:, None, None] * grid[None, :, None]
        wave = np.sin(2 * np.pi * f[:, None, None] * proj + phase[:, None, None])  # (n, 32, 32)
        brightness = 0.5 + rng.normal(0.0, 0.1, (n, 1, 1, 1))
        images = brightness + 0.15 * colour[labels][:, :, None, None] * wave[:, None]
        images += rng.normal(0.0, 0.25, images.shape)
        return np.clip(np.rint(images * 255), 0, 255).astype(np.uint8), labels

    train, test = sample(n_train, train_seq), sample(n_test, test_seq)
    return CifarData(*train, *test, classes=[f"synthetic-{c}" for c in range(num_classes)])


def write_dataset_h5(path: os.PathLike | str, data: CifarData, attrs: dict) -> None:
    """Store ``data`` (layout in docs/ARCHITECTURE.md); ``attrs`` needs dataset, source, md5, synthetic."""
    missing = [k for k in _DATASET_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"write_dataset_h5 needs attrs {missing} (all of {list(_DATASET_ATTRS)})")
    with atomic_h5(path, {**attrs, "classes": list(data.classes)}) as f:
        for split in ("train", "test"):
            f[f"{split}/images"] = getattr(data, f"{split}_images")
            f[f"{split}/labels"] = getattr(data, f"{split}_labels")


def read_dataset_h5(path: os.PathLike | str, expect: dict | None = None) -> tuple[CifarData, dict]:
    """The dataset of a :func:`write_dataset_h5` file, and the attributes that name its data in
    downstream files: ``dataset``, ``synthetic`` and ``data_sha256``, the digest of its contents
    (which images, which half). One checked read of the file.

    ``expect``: the data settings the file must have been made from (:func:`check_data_settings`).
    """
    names = [f"{s}/{k}" for s in ("train", "test") for k in ("images", "labels")]
    with open_checked(path, datasets=names, attrs=("classes", *_DATASET_ATTRS)) as f:
        if expect is not None:
            check_data_settings(path, read_json_attr(f, "settings") if "settings" in f.attrs else {}, expect)
        arrays = [f[name][()] for name in names]
        classes = read_json_attr(f, "classes")
        attrs = {
            "dataset": str(f.attrs["dataset"]),
            "synthetic": bool(f.attrs["synthetic"]),
            "data_sha256": str(f.attrs[DIGEST]),
        }
    return CifarData(*arrays, classes=list(classes)), attrs


def check_data_settings(path: os.PathLike | str, made: dict, expect: dict) -> None:
    """Raise OutputError when a dataset file was made from other data settings than ``expect``
    (``dataset``, ``half``, and ``md5`` of the archive or ``synthetic`` size and seed; an
    expected md5 of None accepts any archive). ``made``: the file's ``settings`` attribute."""
    wanted = {k: v for k, v in expect.items() if not (k == "md5" and v is None)}
    wanted = json.loads(json.dumps(wanted, sort_keys=True))  # as the file stores it
    if "md5" in wanted:
        wanted["md5"] = wanted["md5"].lower()
    wrong = {k: v for k, v in wanted.items() if made.get(k) != v}
    if wrong:
        held = {k: made.get(k, "not recorded") for k in wrong}
        raise OutputError(
            f"{path} was made from other data: it holds {held}, the config asks for {wrong}; "
            f"every model would be trained on the wrong data, so {rebuild_hint(path)}"
        )


def load_dataset_h5(path: os.PathLike | str) -> CifarData:
    """The dataset of a :func:`write_dataset_h5` file (:func:`read_dataset_h5` without the attributes)."""
    return read_dataset_h5(path)[0]


def normalize(
    images: np.ndarray | torch.Tensor,
    mean: tuple[float, ...] = CIFAR10_MEAN,
    std: tuple[float, ...] = CIFAR10_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> ``(x / 255 - mean) / std`` per channel, as ``dtype`` on the images' device."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"normalize expects uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    shape = (1, -1, 1, 1)
    mean_t = torch.tensor(mean, dtype=dtype, device=images.device).view(shape)
    std_t = torch.tensor(std, dtype=dtype, device=images.device).view(shape)
    return (images.to(dtype) / 255 - mean_t) / std_t


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices (sorted) of ``n`` examples, ``n / k`` drawn at random from each of the k classes present."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    k = len(classes)
    if n < k or n % k:
        raise ValueError(f"subset size {n} must be a positive multiple of the {k} classes present")
    per_class = n // k
    if per_class > counts.min():
        raise ValueError(
            f"subset of {n} needs {per_class} examples per class, but class {classes[counts.argmin()]} "
            f"has only {counts.min()}; ask for at most {k * counts.min()}"
        )
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def balanced_half(labels: np.ndarray, half: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of one of two disjoint halves of the examples, each class split evenly.

    Each class's examples are shuffled (``seed``) and cut in two, the first half going to
    ``half=0``; with an odd count the extra example goes to half 1. Halves 0 and 1 partition
    the examples, and neither depends on anything but the labels and ``seed``.
    """
    if half not in (0, 1):
        raise ValueError(f"half must be 0 or 1, got {half!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cut = len(members) // 2
        chosen.append(members[:cut] if half == 0 else members[cut:])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def training_half(data: CifarData, half: int) -> CifarData:
    """``data`` with only :func:`balanced_half` ``half`` of its training images; test set unchanged."""
    keep = balanced_half(data.train_labels, half)
    return CifarData(data.train_images[keep], data.train_labels[keep], data.test_images, data.test_labels, data.classes)


def fixed_batches(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    batch_size: int,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised, un-augmented ``(x, y)`` batches in the given order; the last may be smaller."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images, labels = torch.as_tensor(images), torch.as_tensor(labels, dtype=torch.int64)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return [
        (normalize(images[i : i + batch_size].to(device), dtype=dtype), labels[i : i + batch_size].to(device))
        for i in range(0, len(images), batch_size)
    ]


def training_set_size(path: os.PathLike | str) -> int:
    """The number of training images of a dataset file."""
    with open_checked(path, attrs=_DATASET_ATTRS) as f:
        return len(f["train/labels"])


def describe_dataset(path: os.PathLike | str) -> str:
    """What a dataset file holds, by file name and checksum: safe to publish (no machine paths)."""
    with open_checked(path, attrs=_DATASET_ATTRS) as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        n_train = len(f["train/labels"])
    md5 = f", md5 {attrs['md5']}" if attrs["md5"] else ""
    half = attrs.get("half", "all")
    part = "all training images" if str(half) == "all" else f"class-balanced half {half} of the training images"
    return f"{attrs['source']}{md5}; {part} ({n_train})"
