"""Stored numbers carry checksums that every reader verifies: damage or edits are errors naming the file."""

import h5py
import numpy as np
import pytest

import hessdepth as hd
from hessdepth.h5io import DIGEST, OutputError, atomic_h5, open_checked


def written(path, data=None):
    with atomic_h5(path, {"model": "resnet8", "seed": 0}) as f:
        f["values"] = np.arange(4096, dtype=np.float64) if data is None else data
        f["names"] = hd.h5io.string_array(["a", "b"])
        f["scalar"] = 3.0
        f.create_group("group")["inner"] = np.ones((3, 4), np.float32)
        f.create_dataset("made/by/path", data=np.ones(5, np.int64))
    return path


def flip_byte_of(path, dataset):
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as raw:
        raw.seek(offset + 100)
        byte = raw.read(1)
        raw.seek(offset + 100)
        raw.write(bytes([byte[0] ^ 0xFF]))


def test_written_files_are_checksummed_and_read_back_unchanged(tmp_path):
    path = written(tmp_path / "a.h5")
    with open_checked(path, ("values", "group/inner")) as f:
        assert all(f[name].fletcher32 for name in ("values", "group/inner", "made/by/path")) and DIGEST in f.attrs
        assert not f["names"].fletcher32 and not f["scalar"].fletcher32  # HDF5 checksums arrays of fixed-size elements
        np.testing.assert_array_equal(f["values"][()], np.arange(4096))
        assert [s.decode() for s in f["names"][()]] == ["a", "b"] and f["scalar"][()] == 3.0
        assert f.attrs["model"] == "resnet8"
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]  # written once: no scratch copy left


def test_a_flipped_byte_is_an_error_naming_the_file_and_dataset(tmp_path):
    path = written(tmp_path / "a.h5")
    flip_byte_of(path, "values")
    with pytest.raises(
        OutputError,
        match=r"a\.h5: damaged, the checksum of datasets \['values'\].*rebuild it: remove .*a\.h5 and rerun",
    ):
        open_checked(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda f: f["values"].__setitem__(
            slice(None), f["values"][()] * 1.5
        ),  # a scaled array (HDF5 redoes Fletcher-32)
        lambda f: f.attrs.__setitem__("seed", 1),
        lambda f: f["scalar"].__setitem__((), 4.0),
        lambda f: f.create_dataset("extra", data=np.zeros(3)),
    ],
)
def test_edits_through_hdf5_are_caught_by_the_digest(tmp_path, edit):
    path = written(tmp_path / "a.h5")
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(OutputError, match="damaged, the checksum of its contents"):
        open_checked(path)


def test_files_without_checksums_are_refused(tmp_path):
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f["values"] = np.zeros(3)
    with pytest.raises(OutputError, match="no checksums"):
        open_checked(tmp_path / "old.h5")


def test_a_damaged_probe_store_is_set_aside_not_reused(tmp_path, caplog):
    path = tmp_path / ".lanczos.h5.probes.h5"
    store = hd.ProbeStore(path, {"iterations": 3})
    store.save(0, {"alpha": np.arange(3000, dtype=np.float64)})
    with h5py.File(path, "r+") as f:
        f["probes/0/alpha"][0] = 1e9  # one number changed
    with caplog.at_level("WARNING", logger="hessdepth"):
        again = hd.ProbeStore(path, {"iterations": 3})
    assert again.rows == {} and not path.exists()
    assert (tmp_path / ".lanczos.h5.probes.h5.damaged").exists()
    assert "setting aside damaged probe store" in caplog.text and str(path) in caplog.text
