"""Files that appear complete or not at all.

Every writer of the library writes under a hidden temporary name beside the target
(``.<name>.tmp-<host>-<pid>``) and renames it into place only on success, so a killed job never
leaves a file that looks complete. Temporary files that killed writers on this host left for the
same target are removed by the next writer; a live writer's are kept.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator


def temp_name(path: Path, pid: int, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{pid}{suffix}")


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
def atomic_path(path: os.PathLike | str, suffixes: tuple[str, ...] = ()) -> Iterator[Path | tuple[Path, ...]]:
    """A temporary path to write ``path``'s contents to, renamed to ``path`` when the block ends
    without an error and removed otherwise. With ``suffixes``, also that many more scratch paths
    (removed in any case), yielded after it as a tuple."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_name(path, os.getpid())
    scratch = [temp_name(path, os.getpid(), s) for s in suffixes]
    try:
        yield (tmp, *scratch) if suffixes else tmp
        os.replace(tmp, path)
    finally:
        for t in (tmp, *scratch):
            t.unlink(missing_ok=True)
