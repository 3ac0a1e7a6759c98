"""The summary tables on disk: summary.h5 (the per-run table, each run's density, the per-model
table) and the CSV tables, written atomically and read back with typed values."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_path
from .h5io import OutputError, atomic_h5, open_checked, read_json_attr, rebuild_hint, string_array, write_attrs
from .summary import (
    BOOL_COLUMNS,
    BY_MODEL_COLUMNS,
    BY_MODEL_RULE,
    COLUMNS,
    INT_COLUMNS,
    STR_COLUMNS,
    Summary,
)


def _column_array(rows: Sequence[dict], name: str) -> np.ndarray:
    values = [r[name] for r in rows]
    if name in STR_COLUMNS:
        return string_array(values)
    return np.array(values, dtype=bool if name in BOOL_COLUMNS else np.int64 if name in INT_COLUMNS else np.float64)


def _write_table(group, rows: Sequence[dict], columns: Sequence[str]) -> None:
    for name in columns:
        group.create_dataset(name, data=_column_array(rows, name))
    write_attrs(group, {"columns": list(columns), "n_rows": len(rows)})


def _read_table(path, group, columns: Sequence[str]) -> list[dict]:
    if list(read_json_attr(group, "columns")) != list(columns):
        raise OutputError(f"{path}: its table has other columns than this version writes; {rebuild_hint(path)}")
    values = {name: group[name].asstr()[()] if name in STR_COLUMNS else group[name][()] for name in columns}
    return [
        {name: values[name][i].item() if name not in STR_COLUMNS else str(values[name][i]) for name in columns}
        for i in range(int(group.attrs["n_rows"]))
    ]


def read_summary(path: os.PathLike | str) -> tuple[Summary, list[dict]]:
    """summary.h5 as :func:`write_summary` wrote it: the per-run table with each row's density
    on the grid, and the per-model table (seeds averaged by :data:`BY_MODEL_RULE`)."""
    with open_checked(path, ("grid", "density", "by_model")) as f:
        summary = Summary(_read_table(path, f, COLUMNS), f["grid"][()], f["density"][()])
        return summary, _read_table(path, f["by_model"], BY_MODEL_COLUMNS)


def write_csv(path: os.PathLike | str, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Write rows as CSV (floats at full precision, NaN as ``nan``), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: repr(r[c]) if isinstance(r[c], float) else r[c] for c in columns})


def read_csv(path: os.PathLike | str) -> list[dict]:
    """Read a table written by :func:`write_csv`, with typed values."""
    if not Path(path).exists():
        raise OutputError(f"{path}: file not found")

    def parse(name, value):
        if name in STR_COLUMNS:
            return value
        if name in BOOL_COLUMNS:
            return value == "True"
        return int(value) if name in INT_COLUMNS else float(value)

    with open(path, newline="") as f:
        return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_summary(
    h5_path: os.PathLike | str,
    csv_path: os.PathLike | str,
    by_model_csv: os.PathLike | str,
    summary: Summary,
    by_model: Sequence[dict],
    attrs: dict,
) -> None:
    """summary.h5 (table columns at the root, ``grid``, ``density``, group ``by_model``) and CSVs."""
    with atomic_h5(h5_path, attrs) as f:
        _write_table(f, summary.rows, COLUMNS)
        f.create_dataset("grid", data=summary.grid)
        f.create_dataset("density", data=summary.density)
        write_attrs(f["grid"], {"units": "eigenvalue / spectrum standard deviation"})
        _write_table(f.create_group("by_model"), by_model, BY_MODEL_COLUMNS)
        write_attrs(f["by_model"], {"rule": BY_MODEL_RULE})
    write_csv(csv_path, summary.rows, COLUMNS)
    write_csv(by_model_csv, by_model, BY_MODEL_COLUMNS)
