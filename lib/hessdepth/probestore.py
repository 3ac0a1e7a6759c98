"""Per-probe results saved as they finish, so a killed Lanczos or Hutchinson job resumes.

The store is a small HDF5 file beside the job's output (a workflow that deletes failed outputs
should not declare it, so that it survives a failed job). It records the settings it was made
with; a store whose settings differ from the current ones is discarded, never mixed in. A
store whose checksums fail (or that cannot be read) is set aside as ``<name>.damaged`` with a
warning naming it, never reused.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .h5io import OutputError, atomic_h5, open_checked

log = logging.getLogger(__name__)


class ProbeStore:
    """Finished probes of one job: ``rows[index] = {name: array}``."""

    def __init__(self, path: os.PathLike | str, settings: dict):
        self.path = Path(path)
        self.settings = json.dumps(settings, sort_keys=True)
        self.rows: dict[int, dict[str, np.ndarray]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            with open_checked(self.path, datasets=("probes",), attrs=("settings",)) as f:
                if f.attrs["settings"] != self.settings:
                    log.info("discarding %s: it was made with other settings", self.path)
                    return
                self.rows = {int(name): {key: group[key][()] for key in group} for name, group in f["probes"].items()}
        except (OutputError, OSError, KeyError, ValueError) as err:
            aside = self.path.with_name(self.path.name + ".damaged")
            os.replace(self.path, aside)
            log.warning("setting aside damaged probe store %s as %s, starting afresh (%s)", self.path, aside.name, err)
            self.rows = {}
            return
        log.info("resuming: %d finished probe(s) found in %s", len(self.rows), self.path)

    def missing(self, indices) -> list[int]:
        return [i for i in indices if i not in self.rows]

    def save(self, index: int, row: dict) -> None:
        """Record one finished probe; the file on disk is rewritten atomically."""
        self.rows[int(index)] = {k: np.asarray(v) for k, v in row.items()}
        with atomic_h5(self.path, {"settings": self.settings}) as f:
            probes = f.create_group("probes")
            for i, values in self.rows.items():
                group = probes.create_group(str(i))
                for key, value in values.items():
                    group[key] = value

    def stacked(self, indices, key: str) -> list[np.ndarray]:
        return [self.rows[i][key] for i in indices]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
