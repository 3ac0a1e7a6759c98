"""HDF5 files that pass between rules: written atomically, read with checks.

Every file carries the same provenance attributes (``hessdepth_version`` and whatever the
writer passes: settings, seed, bn mode, dtype ...). Writers go through :func:`atomic_h5`, so a
killed job never leaves a file under its final name. Readers go through :func:`open_checked`,
which names the file, what is missing and the command that rebuilds it.

Stored numbers are checksummed: every array dataset is written with HDF5's own Fletcher-32
filter (HDF5 verifies it on every read, so disk damage is caught where it is), and the root
attribute ``content_sha256`` digests every attribute and every dataset, so an edit made through
HDF5 itself (which recomputes Fletcher-32) is caught too. :func:`open_checked` verifies both, so
a damaged or edited file is an error naming it, never a silently different number.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np

from . import __version__
from .atomic import atomic_path


class OutputError(RuntimeError):
    """An input file is missing, incomplete or not what the reader expects."""


REBUILD_VARIABLE = "HESSDEPTH_REBUILD"  # a command with {path}, set by whatever runs the library (the workflow)


def rebuild_hint(path: os.PathLike | str) -> str:
    """How to rebuild ``path``: the command in the environment variable ``HESSDEPTH_REBUILD``
    (``{path}`` replaced), else to remove it and rerun what made it."""
    template = os.environ.get(REBUILD_VARIABLE)
    if template:
        return f"rebuild it with: {template.format(path=path)}"
    return f"rebuild it: remove {path} and rerun what made it"


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


DIGEST = "content_sha256"


def _hash_value(h, value) -> None:
    array = np.asarray(value)
    if array.dtype.kind in "OUS":
        h.update(repr(array.tolist()).encode())
    else:
        h.update(array.dtype.str.encode() + repr(array.shape).encode() + array.tobytes())


def content_digest(f: h5py.File, path: os.PathLike | str = "") -> str:
    """sha256 of every attribute and every dataset's contents, in name order. Reading a dataset
    also checks its Fletcher-32 checksum: a failure is an OutputError naming ``path`` and it."""
    h = hashlib.sha256()
    objects = [("/", f)]
    f.visititems(lambda name, obj: objects.append((name, obj)))
    for name, obj in sorted(objects, key=lambda item: item[0]):
        h.update(name.encode())
        for key in sorted(k for k in obj.attrs if k != DIGEST):
            h.update(key.encode())
            _hash_value(h, obj.attrs[key])
        if isinstance(obj, h5py.Dataset):
            try:
                data = obj[()]
            except OSError as err:
                raise OutputError(
                    f"{path}: damaged, the checksum of datasets ['{name}'] does not match; {rebuild_hint(path)}"
                ) from err
            _hash_value(h, data)
    return h.hexdigest()


def _checksummable(shape, dtype: np.dtype) -> bool:
    """Whether HDF5's Fletcher-32 filter can cover a dataset (chunked, fixed-size elements)."""
    return bool(shape) and int(np.prod(shape)) > 0 and dtype.kind not in "OUSV" and not h5py.check_string_dtype(dtype)


class _ChecksummedWrites:
    """``create_dataset`` gives every array dataset HDF5's Fletcher-32 filter (and the chunks it
    needs); ``create_group`` returns a group that does the same. ``f[name] = array`` goes through
    ``create_dataset``, so every way of writing an array is covered."""

    def create_dataset(self, name, shape=None, dtype=None, data=None, **kwds):
        probe = np.asarray(data) if data is not None else None
        size = probe.shape if probe is not None else (shape,) if isinstance(shape, int) else tuple(shape or ())
        kind = np.dtype(dtype) if dtype is not None else probe.dtype if probe is not None else np.dtype("f4")
        if _checksummable(size, kind):
            kwds.setdefault("chunks", True)
            kwds.setdefault("fletcher32", True)
        return super().create_dataset(name, shape, dtype, data, **kwds)

    def create_group(self, name, track_order=None):
        return _ChecksummedGroup(super().create_group(name, track_order=track_order).id)


class _ChecksummedGroup(_ChecksummedWrites, h5py.Group):
    pass


class _ChecksummedFile(_ChecksummedWrites, h5py.File):
    pass


@contextlib.contextmanager
def atomic_h5(path: os.PathLike | str, attrs: dict | None = None) -> Iterator[h5py.File]:
    """Open ``path`` for writing under a temporary name; rename into place only on success.

    Temporary files that killed writers on this host left for the same path are removed first.
    Array datasets are written once, with their Fletcher-32 checksums; the content digest
    (module docstring) is added when the block ends.
    """
    with atomic_path(path) as tmp:
        with _ChecksummedFile(tmp, "w") as f:
            write_attrs(f, {"hessdepth_version": __version__, **(attrs or {})})
            yield f
            f.attrs[DIGEST] = content_digest(f)


def verify_checksums(f: h5py.File, path: os.PathLike | str) -> None:
    """Raise OutputError naming ``path`` when a checksum of the open file ``f`` fails or is absent."""
    if DIGEST not in f.attrs:
        raise OutputError(f"{path}: no checksums (written by an older hessdepth or another tool); {rebuild_hint(path)}")
    if f.attrs[DIGEST] != content_digest(f, path):
        raise OutputError(f"{path}: damaged, the checksum of its contents does not match; {rebuild_hint(path)}")


def open_checked(
    path: os.PathLike | str,
    datasets: Iterable[str] = (),
    attrs: Iterable[str] = (),
) -> h5py.File:
    """Open an HDF5 file for reading after checking that it has ``datasets`` and ``attrs`` and
    that its checksums hold (:func:`verify_checksums`)."""
    path = Path(path)
    if not path.exists():
        raise OutputError(f"{path}: file not found; {rebuild_hint(path)}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise OutputError(f"{path}: not a readable HDF5 file ({err}); {rebuild_hint(path)}") from err
    missing = [f"dataset '{d}'" for d in datasets if d not in f]
    missing += [f"attribute '{a}'" for a in attrs if a not in f.attrs]
    try:
        if missing:
            raise OutputError(f"{path}: missing {', '.join(missing)}; {rebuild_hint(path)}")
        verify_checksums(f, path)
    except OutputError:
        f.close()
        raise
    return f


def check_identity(path: os.PathLike | str, attrs, expect: dict | None) -> None:
    """Raise OutputError when the file's identity attributes differ from ``expect`` (e.g. the model,
    seed and step its path stands for): a file copied into another run's folder is never analysed
    as that run."""
    wrong = {k: v for k, v in (expect or {}).items() if k not in attrs or str(attrs[k]) != str(v)}
    if wrong:
        held = {k: (attrs[k].item() if hasattr(attrs[k], "item") else attrs[k]) if k in attrs else None for k in wrong}
        raise OutputError(
            f"{path} holds {held} but stands for {wrong} (a file copied or moved into another "
            f"run's place?); {rebuild_hint(path)}"
        )


def read_json_attr(obj: h5py.HLObject, key: str):
    value = obj.attrs[key]
    return json.loads(value) if isinstance(value, str) else value


def string_array(values: Iterable[str]) -> np.ndarray:
    """Strings as an array h5py stores as variable-length UTF-8."""
    return np.array(list(values), dtype=h5py.string_dtype())
