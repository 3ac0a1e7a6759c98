"""Files that appear complete or not at all.

Every writer of the library writes under a hidden temporary name beside the target
(``.<name>.tmp-<host>-<pid>``) and renames it into place only on success, so a killed job never
leaves a file that looks complete. Temporary files that killed writers on this host left for the
same target are removed by the next writer; a live writer's are kept. A write that fails for
want of space or permission is a :class:`WriteError` that names the file and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path
from typing import Iterator


class WriteError(OSError):
    """A file could not be written where it belongs (full disk, read-only folder); nothing partial is left."""


_WHY_NOT_WRITTEN = {
    errno.ENOSPC: "no space left on the device that holds it",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "its folder is on a read-only file system",
    errno.EACCES: "no permission to write in its folder",
}


def write_error(path: os.PathLike | str, err: OSError) -> WriteError | OSError:
    """``err`` as a :class:`WriteError` naming ``path`` and the fix, when it is a full disk or a
    folder that cannot be written; otherwise ``err`` itself."""
    why = _WHY_NOT_WRITTEN.get(err.errno)
    if why is None or isinstance(err, WriteError):
        return err
    return WriteError(
        err.errno,
        f"cannot write {path}: {why}; free space or make the folder writable (or write to another "
        f"folder), then rerun: nothing partial was left, and every file already made is kept",
    )


def temp_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{pid}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` left by killed writers on this host."""
    prefix = temp_name(path, 0).name[:-1]
    for t in path.parent.glob(f"{prefix}*"):
        pid = t.name[len(prefix) :].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            t.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """A temporary path to write ``path``'s contents to, renamed to ``path`` when the block ends
    without an error and removed otherwise."""
    path = Path(path)
    tmp = temp_name(path, os.getpid())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from err
    finally:
        tmp.unlink(missing_ok=True)
