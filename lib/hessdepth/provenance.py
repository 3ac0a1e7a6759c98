"""What made a result, and the check that a table's rows were all made the same way.

Every analysis output records ``settings`` (the configuration that made it) and the content
digests of the files it read, ``checkpoint_sha256`` and ``data_sha256``; every checkpoint
records ``config`` (its training settings) and ``data_sha256``. :func:`check_run` compares one
run's files with the settings the table is asked for and with each other, so a table never
mixes rows made with other settings (e.g. left behind by ``--rerun-triggers mtime``) or from
another version of a checkpoint or of the data; the error names the file and how to rebuild it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import h5py

from .h5io import DIGEST, OutputError, read_json_attr, rebuild_hint


@dataclass(frozen=True)
class Provenance:
    """The provenance attributes of one file (None where the file records none)."""

    path: str
    digest: str
    settings: dict | None
    checkpoint_sha256: str | None
    data_sha256: str | None


def read_provenance(f: h5py.File, path, settings_attr: str = "settings") -> Provenance:
    """The provenance of an open file; ``settings_attr`` is ``config`` for a checkpoint."""

    def text(key):
        return str(f.attrs[key]) if key in f.attrs else None

    settings = read_json_attr(f, settings_attr) if settings_attr in f.attrs else None
    return Provenance(str(path), text(DIGEST), settings, text("checkpoint_sha256"), text("data_sha256"))


def _plain(value):
    """``value`` as JSON would bring it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _check_settings(made: Provenance, expected: dict) -> None:
    recorded = _plain(made.settings or {})
    wrong = {k: (recorded.get(k, "missing"), v) for k, v in _plain(expected).items() if recorded.get(k) != v}
    if wrong:
        said = ", ".join(f"{k}={got!r} (the config says {want!r})" for k, (got, want) in sorted(wrong.items()))
        raise OutputError(
            f"{made.path} was made with other settings: {said}; a table never mixes settings, "
            f"so {rebuild_hint(made.path)}"
        )


def check_run(
    outputs: dict[str, Provenance], checkpoint: Provenance, expected: dict[str, dict], data_sha256: str | None = None
) -> str:
    """Check one run's analysis ``outputs`` (role -> provenance, e.g. lanczos, moments) against
    ``expected`` settings per role (and ``train`` for the checkpoint), the checkpoint's digest and
    ``data_sha256`` (the data every row must come from; None: the checkpoint's). Returns the data
    digest, for the next run's check."""
    data_sha256 = data_sha256 or checkpoint.data_sha256
    if "train" in expected:
        _check_settings(checkpoint, {k: v for k, v in expected["train"].items() if k != "checkpoints"})
    for role, made in outputs.items():
        if role in expected:
            _check_settings(made, expected[role])
        if made.checkpoint_sha256 != checkpoint.digest:
            raise OutputError(
                f"{made.path} was computed from another version of {checkpoint.path} (retrained "
                f"since?); {rebuild_hint(made.path)}"
            )
    for made in (checkpoint, *outputs.values()):
        if made.data_sha256 != data_sha256:
            raise OutputError(
                f"{made.path} was made from other data than the rest of the table (data_sha256 "
                f"{made.data_sha256}, not {data_sha256}); {rebuild_hint(made.path)}"
            )
    return data_sha256
