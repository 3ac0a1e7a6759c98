"""HDF5 files that pass between rules: written atomically, read with checks.

Every file carries the same provenance attributes (``hessdepth_version`` and whatever the
writer passes: settings, seed, bn mode, dtype ...). Writers go through :func:`atomic_h5`, so a
killed job never leaves a file under its final name. Readers go through :func:`open_checked`,
which names the file, what is missing and the command that rebuilds it.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np

from . import __version__


class OutputError(RuntimeError):
    """An input file is missing, incomplete or not what the reader expects."""


def rebuild_hint(path: os.PathLike | str) -> str:
    return f"rebuild it with: rm -f {path} && snakemake --cores all {path}"


def _attr_value(value):
    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value)
    ):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return value


def write_attrs(obj: h5py.HLObject, attrs: dict) -> None:
    """Store attributes; dicts, lists of mixed types and None are stored as JSON strings."""
    for key, value in attrs.items():
        obj.attrs[key] = _attr_value(value)


def _temp_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{pid}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` left by killed writers on this host."""
    prefix = _temp_name(path, 0).name[:-1]
    for t in path.parent.glob(f"{prefix}*"):
        pid = t.name[len(prefix):]
        if pid.isdigit() and not _alive(int(pid)):
            t.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_h5(path: os.PathLike | str, attrs: dict | None = None) -> Iterator[h5py.File]:
    """Open ``path`` for writing under a temporary name; rename into place only on success.

    Temporary files that killed writers on this host left for the same path are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = _temp_name(path, os.getpid())
    try:
        with h5py.File(tmp, "w") as f:
            write_attrs(f, {"hessdepth_version": __version__, **(attrs or {})})
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_checked(
    path: os.PathLike | str,
    datasets: Iterable[str] = (),
    attrs: Iterable[str] = (),
) -> h5py.File:
    """Open an HDF5 file for reading after checking that it has ``datasets`` and ``attrs``."""
    path = Path(path)
    if not path.exists():
        raise OutputError(f"{path}: file not found; {rebuild_hint(path)}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise OutputError(f"{path}: not a readable HDF5 file ({err}); {rebuild_hint(path)}") from err
    missing = [f"dataset '{d}'" for d in datasets if d not in f]
    missing += [f"attribute '{a}'" for a in attrs if a not in f.attrs]
    if missing:
        f.close()
        raise OutputError(f"{path}: missing {', '.join(missing)}; {rebuild_hint(path)}")
    return f


def read_json_attr(obj: h5py.HLObject, key: str):
    value = obj.attrs[key]
    return json.loads(value) if isinstance(value, str) else value


def string_array(values: Iterable[str]) -> np.ndarray:
    """Strings as an array h5py stores as variable-length UTF-8."""
    return np.array(list(values), dtype=h5py.string_dtype())
