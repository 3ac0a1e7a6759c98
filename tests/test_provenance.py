"""hessdepth.provenance: a table's rows all made with the settings asked for, from the files beside them."""

import h5py
import pytest

import fake_results as fr
from hessdepth.h5io import DIGEST, OutputError
from hessdepth.summary import summarize
from test_summary import DENSITY, STATS

SETTINGS = {"lanczos": {"iterations": 30, "probes": 3}, "moments": {"probes": 16}, "train": {"lr": 0.1, "steps": 200}}


def make_run(d, arch, settings=SETTINGS, data="d" * 64, stale_checkpoint=False):
    """One run's checkpoint, lanczos.h5 and moments.h5 with provenance attributes."""
    d.mkdir(parents=True)
    ident = fr.identity(arch, 8, 0)
    eigs = fr.spectrum(100, 2.0, 0)
    fr.write_checkpoint(d / "ckpt.h5", {**ident, "config": settings["train"], "data_sha256": data}, 0.5)
    with h5py.File(d / "ckpt.h5") as f:
        digest = "0" * 64 if stale_checkpoint else str(f.attrs[DIGEST])
    made = {"checkpoint_sha256": digest, "data_sha256": data}
    fr.write_lanczos(d / "lanczos.h5", eigs, {**ident, **made, "settings": settings["lanczos"]})
    fr.write_moments(d / "moments.h5", eigs, {**ident, **made, "settings": settings["moments"]})
    return {"lanczos": [str(d / "lanczos.h5")], "moments": [str(d / "moments.h5")], "checkpoints": [str(d / "ckpt.h5")]}


def two_runs(tmp_path, **second):
    files = [make_run(tmp_path / "a", "resnet"), make_run(tmp_path / "b", "simple", **second)]
    return {k: files[0][k] + files[1][k] for k in files[0]}


def test_rows_made_as_asked_pass(tmp_path):
    assert len(summarize(**two_runs(tmp_path), density=DENSITY, stats=STATS, settings=SETTINGS).rows) == 2


def test_a_row_made_with_other_settings_is_refused(tmp_path):
    other = {**SETTINGS, "lanczos": {"iterations": 12, "probes": 3}}
    with pytest.raises(
        OutputError,
        match=r"b/lanczos\.h5 was made with other settings: iterations=12 "
        r"\(the config says 30\).*rebuild it",
    ):
        summarize(**two_runs(tmp_path, settings=other), density=DENSITY, stats=STATS, settings=SETTINGS)


def test_a_checkpoint_trained_with_other_settings_is_refused(tmp_path):
    other = {**SETTINGS, "train": {"lr": 0.2, "steps": 200}}
    with pytest.raises(OutputError, match=r"b/ckpt\.h5 was made with other settings: lr=0.2 \(the config says 0.1\)"):
        summarize(**two_runs(tmp_path, settings=other), density=DENSITY, stats=STATS, settings=SETTINGS)


def test_a_spectrum_of_another_version_of_its_checkpoint_is_refused(tmp_path):
    with pytest.raises(OutputError, match=r"b/lanczos\.h5 was computed from another version of .*b/ckpt\.h5"):
        summarize(**two_runs(tmp_path, stale_checkpoint=True), density=DENSITY, stats=STATS, settings=SETTINGS)


def test_rows_from_other_data_are_refused(tmp_path):
    with pytest.raises(OutputError, match=r"b/ckpt\.h5 was made from other data than the rest of the table"):
        summarize(**two_runs(tmp_path, data="e" * 64), density=DENSITY, stats=STATS, settings=SETTINGS)
