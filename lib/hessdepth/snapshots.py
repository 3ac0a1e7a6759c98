"""Training snapshots: all the state a run needs to resume bitwise, saved atomically, checked on load.

A snapshot is a ``torch.save`` dict (loadable with ``weights_only=True``): the format number,
the run's identity (what a resuming run must match), the step, model, optimizer, sampler and
RNG states, the curve so far and the checkpoints already written. Resuming from it makes a
rerun after a kill bitwise identical on the CPU with the same thread count.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_path, remove_stale_temps
from .data import CifarData

SNAPSHOT_FORMAT = 1
log = logging.getLogger(__name__)


class SnapshotError(RuntimeError):
    """A snapshot cannot be read or belongs to a different run."""


def data_digest(data: CifarData) -> str:
    """A digest of the images and labels, so that a snapshot is resumed only on the same data."""
    digest = hashlib.sha1(usedforsecurity=False)
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def rng_states() -> dict:
    """The global torch, numpy and Python RNG states, in a form ``weights_only`` loading accepts."""
    mt, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (mt, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss)
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def set_rng_states(states: dict) -> None:
    """Restore the RNG states :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    mt, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((mt, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])


def save_snapshot(path: Path, snapshot: dict) -> None:
    """Write ``snapshot`` (with this format number and thread count added) atomically and durably."""
    snapshot = {"format": SNAPSHOT_FORMAT, "threads": torch.get_num_threads(), **snapshot}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(snapshot, f)
        f.flush()
        os.fsync(f.fileno())


def load_snapshot(path: Path, identity: dict) -> dict | None:
    """The snapshot at ``path`` if there is one, after checking it belongs to the run ``identity``
    names (else :class:`SnapshotError` that says how to start over). Dead writers' temporaries go."""
    remove_stale_temps(path)
    if not path.exists():
        return None
    fix = f"delete it to train from step 0 (rm -f {path})"
    try:
        snap = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to unpickle means the file is unusable
        raise SnapshotError(f"{path}: unreadable training snapshot ({type(err).__name__}: {err}); {fix}") from err
    if not isinstance(snap, dict) or snap.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path}: not a hessdepth training snapshot of format {SNAPSHOT_FORMAT}; {fix}")
    if snap["identity"] != identity:
        differs = [k for k in identity if snap["identity"].get(k) != identity[k]]
        raise SnapshotError(
            f"{path}: snapshot of a different run (its {', '.join(differs)} differ from "
            f"this run's); restore the original settings and data, or {fix}"
        )
    if snap["threads"] != torch.get_num_threads():
        log.warning(
            "snapshot made with %d threads, resuming with %d: the result may differ from an "
            "uninterrupted run in the last bits",
            snap["threads"],
            torch.get_num_threads(),
        )
    return snap
