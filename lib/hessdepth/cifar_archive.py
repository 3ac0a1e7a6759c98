"""The official CIFAR-10 archive: reading its pickled batches safely, and downloading it.

:func:`read_cifar_archive` checks the archive's md5 when given one, reads only plain members of
bounded size, unpickles only plain data, and checks every batch's shape, dtype and labels: a bad
archive is a :class:`~hessdepth.data.DataError` that says what is wrong.
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import io
import os
import pickle
import tarfile
import urllib.error
import zlib
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .data import CifarData, DataError

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
_ARCHIVE_DIR = "cifar-10-batches-py"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_NUM_CLASSES = 10
_MAX_MEMBER_BYTES = 4 * 31_035_704  # 4x an official data batch's pickle (31 MB)
_MEMBER_KINDS = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link", tarfile.DIRTYPE: "directory"}


def file_md5(path: os.PathLike | str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches only: dicts, lists, bytes and numpy arrays, no other code."""

    _ALLOWED = {
        "_reconstruct": np.empty(0).__reduce__()[0],  # numpy's array reconstructor
        "ndarray": np.ndarray,
        "dtype": np.dtype,
        "encode": codecs.encode,  # how protocol-2 pickles store bytes
    }
    _MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "_codecs"}

    def find_class(self, module, name):
        if module in self._MODULES and name in self._ALLOWED:
            return self._ALLOWED[name]
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")


def _why(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class _BadMember(Exception):
    """A member of the archive is not a usable CIFAR batch: which one (``name``) and why (``problem``)."""

    def __init__(self, name: str, problem: str):
        super().__init__(name, problem)
        self.name, self.problem = name, problem


def _member(archive: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """The archive's member ``name``: a regular file of a size a CIFAR batch can have."""
    try:
        member = archive.getmember(f"{_ARCHIVE_DIR}/{name}")
    except KeyError:
        raise KeyError(name) from None
    if not member.isfile():
        kind = _MEMBER_KINDS.get(member.type, f"tar member of type {member.type!r}")
        target = f" to {member.linkname}" if member.issym() or member.islnk() else ""
        raise _BadMember(name, f"is a {kind}{target}, not a regular file")
    if member.size > _MAX_MEMBER_BYTES:
        raise _BadMember(
            name,
            f"declares {member.size:,} bytes, more than the {_MAX_MEMBER_BYTES:,} "
            "a CIFAR batch can take (an official batch is about 31 MB)",
        )
    return member


def _load_batch(archive: tarfile.TarFile, name: str) -> dict:
    """Member ``name`` unpickled: a dict with str keys, holding the keys a batch needs."""
    member = _member(archive, name)
    try:
        blob = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise _BadMember(name, f"is truncated or corrupt ({_why(err)})") from err
    try:
        batch = _BatchUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as err:  # whatever the bytes make the unpickler raise (MemoryError included)
        raise _BadMember(name, f"is not a readable CIFAR batch ({_why(err)})") from err
    if not isinstance(batch, dict):
        raise _BadMember(name, f"holds a {type(batch).__name__}, not a dict")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = {"batches.meta": {"label_names"}}.get(name, {"data", "labels"}) - batch.keys()
    if missing:
        raise _BadMember(name, f"has no {sorted(missing)}")
    return batch


def _class_names(meta: dict) -> list[str]:
    """batches.meta's label_names: 10 strings (bytes in the official pickle)."""
    names = meta["label_names"]
    if isinstance(names, list) and len(names) == _NUM_CLASSES and all(isinstance(c, (str, bytes)) for c in names):
        try:
            return [c.decode() if isinstance(c, bytes) else c for c in names]
        except UnicodeDecodeError:
            pass
    raise _BadMember("batches.meta", f"has label_names {names!r:.200}; expected a list of {_NUM_CLASSES} class names")


def _pixels(name: str, data) -> np.ndarray:
    """A batch's data as uint8 (N, 3072): a uint8 array of that shape, or bytes holding one."""
    if isinstance(data, bytes) and len(data) % 3072 == 0:
        data = np.frombuffer(data, np.uint8).reshape(-1, 3072)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise _BadMember(name, f"has data {_describe(data)}; expected uint8 pixels of shape (N, 3072)")
    return data


def _describe(data) -> str:
    if isinstance(data, np.ndarray):
        return f"of dtype {data.dtype} and shape {data.shape}"
    return f"of {len(data)} bytes" if isinstance(data, bytes) else f"of type {type(data).__name__}"


def _labels(name: str, labels, n: int) -> np.ndarray:
    """A batch's labels as int64 (n,): a list of ints in [0, 10), one per image of the batch."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(type(v) is int for v in labels):
        raise _BadMember(name, f"has labels {labels!r:.200}; expected a list of integers")
    if len(labels) != n:
        raise _BadMember(name, f"has {len(labels)} labels for its {n} images; expected one label per image")
    bad = [v for v in labels if not 0 <= v < _NUM_CLASSES]
    if bad:
        raise _BadMember(name, f"has label {bad[0]}; expected labels in [0, {_NUM_CLASSES})")
    return np.array(labels, dtype=np.int64)


def _read_batches(archive: tarfile.TarFile, names) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of the data batches ``names``, in order."""
    images, labels = [], []
    for name in names:
        batch = _load_batch(archive, name)
        images.append(_pixels(name, batch["data"]))
        labels.append(_labels(name, batch["labels"], len(images[-1])))
    return np.concatenate(images).reshape(-1, 3, 32, 32), np.concatenate(labels)


def read_cifar_archive(path: os.PathLike | str, md5: str | None = None) -> CifarData:
    """Read a ``cifar-10-python.tar.gz`` (official layout) without extracting it.

    With ``md5`` (either case) the archive's checksum is checked first. Every batch is checked
    whole: regular tar members of sane size, uint8 pixels (N, 3072), one label in [0, 10) per
    image, ten class names. Raises :class:`DataError` on a mismatch, a missing file, a truncated
    or corrupt archive, or a malformed batch (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: CIFAR-10 archive not found; check the data.archive path")
    if md5 is not None:
        actual = file_md5(path)
        if actual != md5.lower():
            raise DataError(
                f"{path}: md5 is {actual}, expected {md5}; the archive is corrupt or a different "
                "file: download it again, or set data.md5 to the checksum of the archive you trust"
            )
    try:
        with tarfile.open(path, "r:gz") as archive:
            classes = _class_names(_load_batch(archive, "batches.meta"))
            train = _read_batches(archive, _TRAIN_BATCHES)
            test = _read_batches(archive, ["test_batch"])
    except _BadMember as err:
        raise DataError(
            f"{path}: {_ARCHIVE_DIR}/{err.name} {err.problem}; download the archive again, "
            "or point data.archive at the official cifar-10-python.tar.gz"
        ) from err
    except KeyError as err:
        raise DataError(
            f"{path}: no {_ARCHIVE_DIR}/{err.args[0]} in the archive; "
            "expected the official cifar-10-python.tar.gz layout"
        ) from err
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{path}: truncated or corrupt CIFAR-10 archive ({type(err).__name__}: {err}); download it again"
        ) from err
    return CifarData(*train, *test, classes=classes)


def download_cifar10(dest_dir: os.PathLike | str, url: str = OFFICIAL_URL, md5: str | None = OFFICIAL_MD5) -> Path:
    """Download the archive into ``dest_dir`` (named after the url) and check its md5 (with
    ``md5=None``: that it is a complete tar.gz, since a cut connection can end a download early).

    An existing file that passes the check is kept, one that fails it is fetched again. The
    download goes to a temporary name and is renamed only once it passes, so a failed or bad
    download leaves ``dest_dir`` as it was.
    """
    from torchvision.datasets.utils import download_url

    dest_dir, md5 = Path(dest_dir), None if md5 is None else md5.lower()
    path = dest_dir / os.path.basename(url)
    if path.is_file() and _archive_problem(path, md5) is None:
        return path
    try:
        with atomic_path(path) as part:
            download_url(url, str(dest_dir), filename=part.name, md5=None)
            problem = _archive_problem(part, md5)
            if problem:
                raise DataError(
                    f"download of {url} {problem}; the file was removed. "
                    "Retry later, or point data.archive at a copy of the archive you trust"
                )
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise DataError(
            f"cannot download {url} ({type(err).__name__}: {err}); without network access, "
            "set the data.archive config option to a cifar-10-python.tar.gz already on disk"
        ) from err
    return path


def _archive_problem(path: Path, md5: str | None) -> str | None:
    """What is wrong with a downloaded archive: an md5 other than ``md5``, or, without one, a
    gzip stream or tar that ends early; None when nothing is."""
    if md5 is not None:
        actual = file_md5(path)
        return None if actual == md5 else f"has md5 {actual}, expected {md5}"
    try:
        with tarfile.open(path, "r:gz") as tar:
            for _ in tar:  # walks every member header, so reads the stream to its last member's end
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        return f"is not a complete tar.gz archive ({err})"
    return None
