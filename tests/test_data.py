"""hessdepth.data: archive reading, download, synthetic data, HDF5 round trip, batching."""

import functools
import http.server
import io
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import hessdepth as hd

from hessdepth.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CifarData,
    DataError,
    balanced_subset,
    fixed_batches,
    load_dataset_h5,
    read_dataset_h5,
    normalize,
    synthetic_dataset,
    write_dataset_h5,
)
from hessdepth.cifar_archive import download_cifar10, file_md5, read_cifar_archive
from hessdepth.h5io import OutputError

from conftest import SHARED_SUBSET as SUBSET, SUBSET_MD5

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
needs_subset = pytest.mark.skipif(not SUBSET.exists(), reason=f"real CIFAR-10 subset not at {SUBSET}")


def cifar_members(data: CifarData, per_batch: int) -> dict:
    """The official layout's objects by member name: batches.meta, five training batches, test_batch."""
    members = {"batches.meta": {"label_names": data.classes, "num_vis": 3072}}
    for i in range(5):
        name, part = f"data_batch_{i + 1}", slice(i * per_batch, (i + 1) * per_batch)
        members[name] = {
            "data": data.train_images[part].reshape(-1, 3072),
            "labels": data.train_labels[part].tolist(),
            "batch_label": name,
        }
    members["test_batch"] = {"data": data.test_images.reshape(-1, 3072), "labels": data.test_labels.tolist()}
    return members


def write_archive(path: Path, members: dict) -> None:
    """cifar-10-batches-py/NAME for each member: a TarInfo as is (links), bytes raw, anything else pickled."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, obj in members.items():
            if isinstance(obj, tarfile.TarInfo):
                tar.addfile(obj)
                continue
            blob = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def write_cifar_archive(path: Path, data: CifarData, per_batch: int) -> None:
    write_archive(path, cifar_members(data, per_batch))


@pytest.fixture(scope="module")
def small():
    return synthetic_dataset(50, 20, seed=3)


@pytest.fixture(scope="module")
def subset():
    return read_cifar_archive(SUBSET, md5=SUBSET_MD5)


@needs_subset
def test_real_subset_matches_its_pickles(subset):
    assert subset.train_images.shape == (5000, 3, 32, 32) and subset.test_images.shape == (1000, 3, 32, 32)
    assert subset.classes == CIFAR_CLASSES
    assert np.bincount(subset.train_labels).tolist() == [500] * 10
    assert np.bincount(subset.test_labels).tolist() == [100] * 10
    with tarfile.open(SUBSET) as tar:  # reference: the plain unpickler, batch 3 and the test batch
        batch = pickle.load(tar.extractfile("cifar-10-batches-py/data_batch_3"), encoding="bytes")
        test = pickle.load(tar.extractfile("cifar-10-batches-py/test_batch"), encoding="bytes")
    np.testing.assert_array_equal(subset.train_images[2000:3000].reshape(1000, -1), batch[b"data"])
    np.testing.assert_array_equal(subset.train_labels[2000:3000], batch[b"labels"])
    np.testing.assert_array_equal(subset.test_images.reshape(1000, -1), test[b"data"])
    # channel order and constants: real images normalise to mean ~0, std ~1 per channel
    x = normalize(subset.train_images)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=0.05)
    assert torch.allclose(x.std((0, 2, 3)), torch.ones(3), atol=0.05)


@needs_subset
def test_md5_mismatch_names_both_checksums():
    with pytest.raises(DataError, match=f"md5 is {SUBSET_MD5}, expected 0{{32}}"):
        read_cifar_archive(SUBSET, md5="0" * 32)


@needs_subset
def test_truncated_or_bogus_archive_is_a_data_error(tmp_path):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(SUBSET.read_bytes()[:6_000_000])
    with pytest.raises(DataError, match="truncated.tar.gz: truncated or corrupt"):
        read_cifar_archive(truncated)
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not a gzip file" * 100)
    with pytest.raises(DataError, match="bogus.tar.gz: truncated or corrupt"):
        read_cifar_archive(bogus)
    with pytest.raises(DataError, match="not found"):
        read_cifar_archive(tmp_path / "missing.tar.gz")


def test_archive_round_trip_and_missing_member(tmp_path, small):
    path = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_archive(path, small, per_batch=10)
    back = read_cifar_archive(path, md5=file_md5(path))
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(back, name), getattr(small, name))
    assert back.classes == small.classes
    with tarfile.open(path) as src, tarfile.open(tmp_path / "partial.tar.gz", "w:gz") as dst:
        for member in src.getmembers():
            if not member.name.endswith("test_batch"):
                dst.addfile(member, src.extractfile(member))
    with pytest.raises(DataError, match="no cifar-10-batches-py/test_batch"):
        read_cifar_archive(tmp_path / "partial.tar.gz")


def test_batch_without_labels_is_a_data_error(tmp_path, small):
    path = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_archive(path, small, per_batch=10)
    with tarfile.open(path) as src, tarfile.open(tmp_path / "nolabels.tar.gz", "w:gz") as dst:
        for member in src.getmembers():
            blob = src.extractfile(member).read()
            if member.name.endswith("data_batch_2"):
                blob = pickle.dumps({"data": pickle.loads(blob)["data"]}, protocol=2)
                member.size = len(blob)
            dst.addfile(member, io.BytesIO(blob))
    with pytest.raises(DataError, match=r"nolabels.tar.gz: .*data_batch_2 has no \['labels'\]"):
        read_cifar_archive(tmp_path / "nolabels.tar.gz")


def test_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        blob = pickle.dumps({"label_names": [], "x": functools.partial(print, "pwned")}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(DataError, match="unexpected object functools.partial"):
        read_cifar_archive(path)


def tampered(tmp_path, small, **changes) -> Path:
    """An archive of ``small`` (10 images per training batch) with some members replaced."""
    members = cifar_members(small, per_batch=10)
    for name, change in changes.items():
        members[name] = change(members[name]) if callable(change) else change
    path = tmp_path / "tampered.tar.gz"
    write_archive(path, members)
    return path


def bad_member(name: str, problem: str) -> str:
    """What a DataError about member ``name`` of tampered.tar.gz says, as a regex."""
    return rf"tampered\.tar\.gz: cifar-10-batches-py/{name} {problem}.*download the archive again"


def with_key(key, value):
    return lambda batch: {**batch, key: value(batch[key]) if callable(value) else value}


def test_each_batch_needs_one_label_per_image(tmp_path, small):
    path = tampered(
        tmp_path,
        small,
        data_batch_2=with_key("labels", lambda y: y[:-1]),  # 9 labels for 10 images,
        data_batch_3=with_key("labels", lambda y: y + [0]),
    )  # 11 for 10: 50 in all
    with pytest.raises(DataError, match=bad_member("data_batch_2", "has 9 labels for its 10 images")):
        read_cifar_archive(path)


@pytest.mark.parametrize(
    "pixels, given",
    [
        (lambda x: x.astype(np.uint16) + 256, r"of dtype uint16 and shape \(10, 3072\)"),  # would wrap to x
        (lambda x: x / 255.0, r"of dtype float64 and shape \(10, 3072\)"),  # would become zeros
        (lambda x: x[:, :3071], r"of dtype uint8 and shape \(10, 3071\)"),
        (lambda x: x.reshape(10, 3, 32, 32), r"of dtype uint8 and shape \(10, 3, 32, 32\)"),
        (lambda x: x.tobytes()[:-1], "of 30719 bytes"),
        (lambda x: x.tolist(), "of type list"),
    ],
    ids=["uint16", "float", "3071-columns", "4-d", "short-bytes", "list"],
)
def test_pixels_must_be_uint8_rows_of_3072(tmp_path, small, pixels, given):
    path = tampered(tmp_path, small, data_batch_4=with_key("data", pixels))
    with pytest.raises(DataError, match=bad_member("data_batch_4", f"has data {given}; expected uint8")):
        read_cifar_archive(path)


def test_pixels_may_be_raw_bytes(tmp_path, small):
    path = tampered(tmp_path, small, test_batch=with_key("data", lambda x: x.tobytes()))
    np.testing.assert_array_equal(read_cifar_archive(path).test_images, small.test_images)


@pytest.mark.parametrize(
    "labels, problem",
    [
        (lambda y: [10] + y[1:], r"has label 10; expected labels in \[0, 10\)"),
        (lambda y: [-1] + y[1:], r"has label -1; expected labels in \[0, 10\)"),
        (lambda y: [float(v) for v in y], r"has labels \[.*\]; expected a list of integers"),
        (None, "has labels None; expected a list of integers"),
    ],
    ids=["ten", "negative", "floats", "none"],
)
def test_labels_must_be_integers_below_ten(tmp_path, small, labels, problem):
    path = tampered(tmp_path, small, test_batch=with_key("labels", labels))
    with pytest.raises(DataError, match=bad_member("test_batch", problem)):
        read_cifar_archive(path)


@pytest.mark.parametrize(
    "names",
    [
        [f"class{i}" for i in range(9)],
        list(range(10)),
        "abcdefghij",
        [b"\xff" * 3] * 10,
    ],
    ids=["nine", "ints", "string", "not-utf8"],
)
def test_label_names_must_be_ten_strings(tmp_path, small, names):
    path = tampered(tmp_path, small, **{"batches.meta": {"label_names": names}})
    with pytest.raises(DataError, match=bad_member(r"batches\.meta", "has label_names .*; expected a list of 10")):
        read_cifar_archive(path)


@pytest.mark.parametrize(
    "kind, described", [(tarfile.SYMTYPE, "symbolic link"), (tarfile.LNKTYPE, "hard link")], ids=["symlink", "hardlink"]
)
def test_links_are_not_batches(tmp_path, small, kind, described):
    link = tarfile.TarInfo("cifar-10-batches-py/data_batch_5")
    link.type, link.linkname = kind, "cifar-10-batches-py/data_batch_1"
    path = tampered(tmp_path, small, data_batch_5=link)
    with pytest.raises(
        DataError, match=bad_member("data_batch_5", f"is a {described} to .*data_batch_1, not a regular file")
    ):
        read_cifar_archive(path)


def test_oversized_member_is_refused_before_reading(tmp_path, small):
    def padded(batch):  # a valid pickle, then 130 MB of zeros (cheap to compress)
        return pickle.dumps(batch, protocol=2) + bytes(130_000_000)

    path = tampered(tmp_path, small, data_batch_3=padded)
    with pytest.raises(DataError, match=bad_member("data_batch_3", "declares 130,[0-9,]+ bytes, more than")):
        read_cifar_archive(path)


def test_pickle_declaring_a_huge_object_is_a_data_error(tmp_path, small):
    huge_bytes = b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"abc"  # BINBYTES8 of 2**60 bytes
    path = tampered(tmp_path, small, **{"batches.meta": huge_bytes})
    with pytest.raises(DataError, match=bad_member(r"batches\.meta", "is not a readable CIFAR batch")):
        read_cifar_archive(path)


def test_md5_is_compared_case_insensitively(tmp_path, small, http_server):
    root, base = http_server
    path = root / "cifar-10-python.tar.gz"
    write_cifar_archive(path, small, per_batch=10)
    upper = file_md5(path).upper()
    np.testing.assert_array_equal(read_cifar_archive(path, md5=upper).test_labels, small.test_labels)
    assert download_cifar10(tmp_path / "dest", url=f"{base}/cifar-10-python.tar.gz", md5=upper).is_file()


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server in a thread serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_checks_md5_and_keeps_dest_clean(tmp_path, http_server, small):
    root, base = http_server
    write_cifar_archive(root / "cifar-10-python.tar.gz", small, per_batch=10)
    md5 = file_md5(root / "cifar-10-python.tar.gz")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("untouched")

    with pytest.raises(DataError, match=f"has md5 {md5}, expected f{{32}}"):
        download_cifar10(dest, url=f"{base}/cifar-10-python.tar.gz", md5="f" * 32)
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]

    path = download_cifar10(dest, url=f"{base}/cifar-10-python.tar.gz", md5=md5)
    assert path == dest / "cifar-10-python.tar.gz" and file_md5(path) == md5
    np.testing.assert_array_equal(read_cifar_archive(path).test_images, small.test_images)
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-python.tar.gz", "keep.txt"]
    assert (dest / "keep.txt").read_text() == "untouched"

    (root / "cifar-10-python.tar.gz").unlink()  # a good file already there is not fetched again
    assert download_cifar10(dest, url=f"{base}/cifar-10-python.tar.gz", md5=md5) == path


def test_download_without_network_points_to_data_archive(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="data.archive"):
        download_cifar10(tmp_path, url=f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_synthetic_is_deterministic_balanced_and_seed_dependent():
    a, b, c = synthetic_dataset(100, 30, seed=1), synthetic_dataset(100, 30, seed=1), synthetic_dataset(100, 30, seed=2)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert not np.array_equal(a.train_images, c.train_images)
    assert a.train_images.dtype == np.uint8 and a.train_images.shape == (100, 3, 32, 32)
    assert np.bincount(a.train_labels).tolist() == [10] * 10
    assert a.classes == [f"synthetic-{i}" for i in range(10)]
    np.testing.assert_array_equal(synthetic_dataset(40, 30, seed=1).test_images, a.test_images)
    assert len(set(synthetic_dataset(30, 10, seed=0, num_classes=3).train_labels)) == 3


def test_cifar_data_validates_shapes():
    with pytest.raises(ValueError, match="train_images must be uint8"):
        CifarData(
            np.zeros((2, 32, 32, 3), np.uint8),
            np.zeros(2, np.int64),
            np.zeros((1, 3, 32, 32), np.uint8),
            np.zeros(1, np.int64),
            ["a", "b"],
        )
    with pytest.raises(ValueError, match=r"test_labels must lie in \[0, 2\)"):
        CifarData(
            np.zeros((2, 3, 32, 32), np.uint8),
            np.zeros(2, np.int64),
            np.zeros((1, 3, 32, 32), np.uint8),
            np.full(1, 2, np.int64),
            ["a", "b"],
        )


def test_dataset_h5_round_trip(tmp_path, small):
    attrs = {"dataset": "synthetic", "source": "synthetic_dataset(50, 20, seed=3)", "md5": "null", "synthetic": True}
    write_dataset_h5(tmp_path / "d.h5", small, attrs)
    back = load_dataset_h5(tmp_path / "d.h5")
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(back, name), getattr(small, name))
        assert getattr(back, name).dtype == getattr(small, name).dtype
    assert back.classes == small.classes
    again, names = read_dataset_h5(tmp_path / "d.h5")  # the data and what names it downstream
    np.testing.assert_array_equal(again.train_images, small.train_images)
    with h5py.File(tmp_path / "d.h5") as f:
        assert names == {"dataset": "synthetic", "synthetic": True, "data_sha256": f.attrs["content_sha256"]}
    with pytest.raises(ValueError, match="needs attrs \\['synthetic'\\]"):
        write_dataset_h5(tmp_path / "e.h5", small, {k: v for k, v in attrs.items() if k != "synthetic"})
    with pytest.raises(OutputError, match="file not found"):
        load_dataset_h5(tmp_path / "e.h5")


def test_dataset_h5_is_checked_against_the_data_settings_it_stands_for(tmp_path, small):
    made = {"dataset": "cifar10", "half": 0, "md5": "03223099d0e2676ccf4a9d282a75807c"}
    attrs = {"dataset": "cifar10", "source": "x.tar.gz", "md5": made["md5"], "synthetic": False}
    write_dataset_h5(tmp_path / "d.h5", small, {**attrs, "settings": made})
    read_dataset_h5(tmp_path / "d.h5", expect=made)
    read_dataset_h5(tmp_path / "d.h5", expect={**made, "md5": made["md5"].upper()})  # either case
    read_dataset_h5(tmp_path / "d.h5", expect={**made, "md5": None})  # no md5 asked: any archive
    with pytest.raises(
        OutputError,
        match=r"d.h5 was made from other data: it holds \{'half': 0\}, the config asks for \{'half': 1\}",
    ):
        read_dataset_h5(tmp_path / "d.h5", expect={**made, "half": 1})
    with pytest.raises(OutputError, match=r"holds \{'dataset': 'cifar10', 'synthetic': 'not recorded'\}, the config"):
        read_dataset_h5(tmp_path / "d.h5", expect={"dataset": "synthetic", "half": 0, "synthetic": {"seed": 0}})
    write_dataset_h5(tmp_path / "old.h5", small, attrs)  # no record of its settings: refused, not trusted
    with pytest.raises(OutputError, match="'not recorded'"):
        read_dataset_h5(tmp_path / "old.h5", expect=made)


def test_normalize_matches_formula():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    x = normalize(images)
    for c in range(3):
        expected = (images[:, c].double() / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        torch.testing.assert_close(x[:, c].double(), expected, rtol=0, atol=1e-6)
    assert x.dtype == torch.float32 and normalize(images, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="expects uint8"):
        normalize(images.float())


def test_balanced_subset():
    labels = np.repeat(np.arange(4), [5, 6, 7, 8])
    idx = balanced_subset(labels, 12, seed=0)
    assert np.bincount(labels[idx]).tolist() == [3] * 4
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, balanced_subset(labels, 12, seed=0))
    assert any(not np.array_equal(idx, balanced_subset(labels, 12, seed=s)) for s in range(1, 5))
    with pytest.raises(ValueError, match="multiple of the 4 classes"):
        balanced_subset(labels, 10, seed=0)
    with pytest.raises(ValueError, match="at most 20"):
        balanced_subset(labels, 24, seed=0)


def test_fixed_batches(small):
    batches = fixed_batches(small.train_images, small.train_labels, 16, "cpu", dtype=torch.float64)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), normalize(small.train_images, dtype=torch.float64))
    assert torch.equal(torch.cat([y for _, y in batches]), torch.from_numpy(small.train_labels))
    again = fixed_batches(small.train_images, small.train_labels, 16, "cpu", dtype=torch.float64)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(batches, again))


def test_balanced_halves_partition_the_training_set_class_by_class():
    labels = np.repeat(np.arange(10), [50, 51, 50, 50, 50, 50, 50, 50, 50, 49])
    h0, h1 = hd.balanced_half(labels, 0), hd.balanced_half(labels, 1)
    assert not set(h0) & set(h1) and sorted([*h0, *h1]) == list(range(len(labels)))
    for c in range(10):
        assert abs((labels[h0] == c).sum() - (labels[h1] == c).sum()) <= 1
    np.testing.assert_array_equal(h0, hd.balanced_half(labels, 0))  # a function of the labels alone
    with pytest.raises(ValueError, match="half must be 0 or 1"):
        hd.balanced_half(labels, 2)
    data = hd.synthetic_dataset(100, 20, seed=0)
    half = hd.training_half(data, 1)
    assert len(half.train_labels) == 50 and len(half.test_labels) == 20


def test_download_without_md5_refuses_and_refetches_a_truncated_archive(tmp_path, http_server, small):
    """With data.md5 null a cut connection must not leave a short archive that is kept for good."""
    root, base = http_server
    url = f"{base}/cifar-10-python.tar.gz"
    write_cifar_archive(tmp_path / "whole.tar.gz", small, per_batch=10)
    whole = (tmp_path / "whole.tar.gz").read_bytes()
    (root / "cifar-10-python.tar.gz").write_bytes(whole[: len(whole) * 2 // 3])
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="is not a complete tar.gz archive.*the file was removed"):
        download_cifar10(dest, url=url, md5=None)
    assert list(dest.iterdir()) == []

    (dest / "cifar-10-python.tar.gz").write_bytes(whole[:1000])  # a short file left by an older version
    (root / "cifar-10-python.tar.gz").write_bytes(whole)
    path = download_cifar10(dest, url=url, md5=None)
    assert path.read_bytes() == whole
