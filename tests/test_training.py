"""hessdepth.training and its parts (batches, checkpoints, snapshots): schedule, augmentation, checkpoints,
determinism, kill-and-resume, divergence."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from hessdepth.cifar_archive import read_cifar_archive
from hessdepth.data import synthetic_dataset
from hessdepth.h5io import OutputError
from hessdepth.batches import Sampler, augment
from hessdepth import identity
from hessdepth.checkpoints import CURVE_DATASETS, load_checkpoint, model_attrs, read_curve
from hessdepth.snapshots import SnapshotError
from hessdepth.training import TrainConfig, TrainingDiverged, lr_at, seeded_model, train

from conftest import ROOT, SHARED_SUBSET as SUBSET, SUBSET_MD5


@pytest.fixture(scope="module")
def tiny():
    return synthetic_dataset(128, 32, seed=0)


def run(out: Path, data, cfg: TrainConfig, steps=(), seed=0, arch="resnet", width=4, model=None, **kw):
    model = model if model is not None else seeded_model(arch, 8, width=width, seed=seed)
    result = train(
        model,
        data,
        cfg,
        steps,
        lambda s: out / f"step{s}.h5",
        out / "curve.h5",
        out / "snapshot.pt",
        seed=seed,
        progress=False,
        **kw,
    )
    return model, result


def h5_contents(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, for exact comparison."""
    items = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: items.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        items.update({f"@{k}": v for k, v in f.attrs.items()})
    return items


def assert_same_h5(a: Path, b: Path) -> None:
    ca, cb = h5_contents(a), h5_contents(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        np.testing.assert_array_equal(ca[key], cb[key], err_msg=f"{a.name}: {key}")


def test_lr_schedule():
    cfg = TrainConfig(steps=100, lr=0.1)
    lrs = [lr_at(cfg, s) for s in range(100)]
    assert lrs[:50] == [0.1] * 50
    np.testing.assert_allclose(lrs[50:75], 0.01, rtol=1e-12)
    np.testing.assert_allclose(lrs[75:], 0.001, rtol=1e-12)
    warm = TrainConfig(steps=100, lr=0.1, warmup_steps=10)
    np.testing.assert_allclose([lr_at(warm, s) for s in range(12)], [0.01 * (s + 1) for s in range(10)] + [0.1, 0.1])
    paper = TrainConfig()
    assert (lr_at(paper, 49_999), lr_at(paper, 50_000), lr_at(paper, 75_000)) == pytest.approx((0.1, 0.01, 0.001))


def test_config_yaml_trains_with_train_configs_defaults():
    """The paper's recipe is written once as TrainConfig's defaults; config.yaml states the same."""
    train = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]
    train.pop("checkpoints")  # where to checkpoint is the workflow's, not the recipe's
    assert TrainConfig(**train) == TrainConfig()


def test_config_validation():
    with pytest.raises(ValueError, match="on_divergence: 'ignore' must be 'error' or 'record'"):
        TrainConfig(on_divergence="ignore")
    with pytest.raises(ValueError, match="lr_milestones"):
        TrainConfig(lr_milestones=[0.5, 1.5])
    assert TrainConfig(lr_milestones=[0.3]).lr_milestones == (0.3,)
    # every problem at once, in the words the workflow's config check uses (train_problems)
    with pytest.raises(ValueError) as err:
        TrainConfig(steps=10, batch_size=0, lr=0.0, momentum=2.0, warmup_steps=10, lr_milestones=[0.7, 0.2])
    for expected in (
        "train.batch_size: 0 must be an integer >= 1",
        "train.lr: 0.0 must be a number > 0",
        "train.momentum: 2.0 must be a number in [0, 1]",
        "train.warmup_steps: 10 is not shorter than the training",
        "train.lr_milestones: [0.7, 0.2] must increase",
    ):
        assert expected in str(err.value)


def test_augment_matches_per_image_crop_and_flip():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    offsets = torch.randint(0, 9, (16, 2), generator=g)
    offsets[0], offsets[1] = torch.tensor([0, 8]), torch.tensor([8, 0])
    flips = torch.arange(16) % 2 == 0
    out = augment(images, offsets, flips)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for i in range(16):
        r, c = offsets[i].tolist()
        ref = F.pad(images[i], (4, 4, 4, 4))[:, r : r + 32, c : c + 32]
        assert torch.equal(out[i], ref.flip(-1) if flips[i] else ref), i
    centre = augment(images, torch.full((16, 2), 4), torch.zeros(16, dtype=torch.bool))
    assert torch.equal(centre, images)


def test_sampler_epochs_are_permutations_and_seeded():
    a, b = Sampler(100, 32, seed=5), Sampler(100, 32, seed=5)
    first = [a.indices() for _ in range(6)]
    assert all(torch.equal(x, b.indices()) for x in first)
    for epoch in (first[:3], first[3:]):  # 3 full batches per epoch, the last 4 images skipped
        seen = torch.cat(epoch)
        assert len(set(seen.tolist())) == 96 and seen.max() < 100
    assert not torch.equal(torch.cat(first[:3]), torch.cat(first[3:]))  # a fresh permutation per epoch
    with pytest.raises(ValueError, match="smaller than batch_size"):
        Sampler(10, 32, seed=0)


@pytest.mark.skipif(not SUBSET.exists(), reason=f"real CIFAR-10 subset not at {SUBSET}")
def test_real_cifar_subset_loss_decreases(tmp_path):
    data = read_cifar_archive(SUBSET, md5=SUBSET_MD5)
    cfg = TrainConfig(steps=30, batch_size=64, lr=0.05, log_every=5, snapshot_every=10)
    _, result = run(tmp_path, data, cfg, steps=[0, 30], width=8)
    curve, attrs = read_curve(result.curve_path)
    _, start = load_checkpoint(tmp_path / "step0.h5")
    _, end = load_checkpoint(tmp_path / "step30.h5")
    assert curve["train/loss"][-1] < curve["train/loss"][0] - 0.1
    assert end["train_loss"] < start["train_loss"] and end["test_loss"] < start["test_loss"]
    assert not (tmp_path / "snapshot.pt").exists()  # removed once training finished


def test_synthetic_data_is_learnable(tmp_path):
    data = synthetic_dataset(1000, 200, seed=0)
    cfg = TrainConfig(steps=100, batch_size=64, lr=0.1, log_every=50, snapshot_every=1000)
    _, result = run(tmp_path, data, cfg, steps=[100], width=8)
    _, attrs = load_checkpoint(tmp_path / "step100.h5")
    assert attrs["test_acc"] > 0.3  # chance: 0.1


def test_checkpoints_curve_and_determinism(tmp_path, tiny):
    cfg = TrainConfig(steps=12, batch_size=32, log_every=5, snapshot_every=4)
    model, result = run(tmp_path / "a", tiny, cfg, steps=[0, 5, 12], seed=3, attrs={"dataset": "tiny"})
    run(tmp_path / "b", tiny, cfg, steps=[0, 5, 12], seed=3, attrs={"dataset": "tiny"})
    run(tmp_path / "c", tiny, cfg, steps=[0, 5, 12], seed=4, attrs={"dataset": "tiny"})
    assert result.steps_done == 12 and not result.diverged and result.resumed_from is None
    for name in ("step0.h5", "step5.h5", "step12.h5", "curve.h5"):
        assert_same_h5(tmp_path / "a" / name, tmp_path / "b" / name)
    assert not np.array_equal(
        h5_contents(tmp_path / "a/step12.h5")["state/fc.weight"],
        h5_contents(tmp_path / "c/step12.h5")["state/fc.weight"],
    )

    initial, attrs0 = load_checkpoint(tmp_path / "a/step0.h5")
    fresh = seeded_model("resnet", 8, width=4, seed=3)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in initial.state_dict().items())
    final, attrs = load_checkpoint(tmp_path / "a/step12.h5")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in final.state_dict().items())
    assert (attrs["model"], attrs["arch"], attrs["depth"], attrs["width"], attrs["step"]) == (
        "resnet8",
        "resnet",
        8,
        4,
        12,
    )
    assert attrs["n_params"] == sum(p.numel() for p in final.parameters())
    assert attrs["diverged"] is False and attrs["diverged_at"] == -1 and attrs["dataset"] == "tiny"
    assert attrs["config"]["steps"] == 12 and attrs["seed"] == 3
    assert 0 <= attrs["test_acc"] <= 1 and np.isfinite(attrs["train_loss"])

    curve, cattrs = read_curve(tmp_path / "a/curve.h5")
    assert set(curve) == set(CURVE_DATASETS)
    assert curve["train/step"].tolist() == [5, 10, 12]  # a final partial window
    assert curve["test/step"].tolist() == [0, 5, 12]
    assert curve["test/acc"][-1] == attrs["test_acc"] and cattrs["model"] == "resnet8"
    with pytest.raises(OutputError, match="missing dataset 'state'"):
        load_checkpoint(tmp_path / "a/curve.h5")


def test_resnet_and_simple_share_schedule_and_batches(tmp_path, tiny):
    cfg = TrainConfig(steps=10, batch_size=32, lr=0.2, lr_milestones=(0.3, 0.6), warmup_steps=2, log_every=1)
    inputs = {}
    for arch in ("resnet", "simple"):
        model = seeded_model(arch, 8, width=4, seed=0)
        seen = inputs[arch] = []
        model.register_forward_pre_hook(lambda m, args, seen=seen: seen.append(args[0].clone()) if m.training else None)
        run(tmp_path / arch, tiny, cfg, steps=[10], model=model)
    assert len(inputs["resnet"]) == 10
    assert all(torch.equal(a, b) for a, b in zip(inputs["resnet"], inputs["simple"]))
    curves = {arch: read_curve(tmp_path / arch / "curve.h5") for arch in inputs}
    lrs = curves["resnet"][0]["train/lr"]
    np.testing.assert_array_equal(lrs, curves["simple"][0]["train/lr"])
    np.testing.assert_allclose(lrs, [lr_at(cfg, s) for s in range(10)])
    assert curves["resnet"][1]["config"] == curves["simple"][1]["config"]


WORKER = """
import logging, sys, time, torch
from hessdepth.data import synthetic_dataset
from hessdepth.training import TrainConfig, seeded_model, train
logging.basicConfig(level=logging.INFO)  # training's log lines ("resuming from step ...") on stderr
torch.set_num_threads(1)
out, delay = sys.argv[1], float(sys.argv[2])
model = seeded_model("resnet", 8, width=4, seed=0)
if delay:  # slows each forward so that the parent can kill it mid-run
    model.register_forward_pre_hook(lambda module, args: time.sleep(delay))
cfg = TrainConfig(steps=60, batch_size=32, log_every=7, snapshot_every=10)  # windows span snapshots
train(model, synthetic_dataset(256, 64, seed=0), cfg, [0, 20, 60], lambda s: f"{out}/step{s}.h5",
      f"{out}/curve.h5", f"{out}/snapshot.pt", seed=1, progress=False)
"""


def test_sigkill_and_rerun_is_bitwise_identical(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def worker(out: Path, delay: float = 0.0) -> subprocess.Popen:
        out.mkdir(exist_ok=True)
        return subprocess.Popen(
            [sys.executable, str(script), str(out), str(delay)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    reference = worker(tmp_path / "reference")
    killed = tmp_path / "killed"
    snapshot = killed / "snapshot.pt"
    for pause in (0.1, 0.05):  # kill twice, each time a while after a fresh snapshot appeared
        before = snapshot.stat().st_ino if snapshot.exists() else None
        proc = worker(killed, delay=0.03)
        deadline = time.monotonic() + 120
        while not snapshot.exists() or snapshot.stat().st_ino == before:
            assert proc.poll() is None and time.monotonic() < deadline, f"no new snapshot: {proc.communicate()}"
            time.sleep(0.01)
        time.sleep(pause)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL, "the worker finished before it was killed"
    assert not (killed / "step60.h5").exists()
    (killed / "step0.h5").unlink()  # as snakemake removes the outputs of a failed job

    rerun = worker(killed)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "resuming from step" in err
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    for name in ("step0.h5", "step20.h5", "step60.h5", "curve.h5"):
        assert_same_h5(tmp_path / "reference" / name, killed / name)
        assert (tmp_path / "reference" / name).read_bytes() == (killed / name).read_bytes(), name
    assert not (killed / "snapshot.pt").exists()


def test_divergence_error_keeps_last_good_snapshot(tmp_path, tiny):
    cfg = TrainConfig(steps=20, batch_size=32, lr=1e5, log_every=10, snapshot_every=1, augment=False)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 2 \(lr 100000\).*snapshot.*kept"):
        run(tmp_path, tiny, cfg, steps=[1, 20])
    snap = torch.load(tmp_path / "snapshot.pt", weights_only=True)
    assert snap["step"] == 2
    assert all(torch.isfinite(v).all() for v in snap["model"].values())
    assert (tmp_path / "step1.h5").exists() and not (tmp_path / "step20.h5").exists()
    mtime = (tmp_path / "snapshot.pt").stat().st_mtime_ns
    with pytest.raises(TrainingDiverged, match="at step 2"):  # resumes and diverges the same way
        run(tmp_path, tiny, cfg, steps=[1, 20])
    assert (tmp_path / "snapshot.pt").stat().st_mtime_ns == mtime


def test_divergence_record_marks_remaining_checkpoints(tmp_path, tiny):
    cfg = TrainConfig(steps=20, batch_size=32, lr=1e5, log_every=1, on_divergence="record", augment=False)
    _, result = run(tmp_path, tiny, cfg, steps=[1, 10, 20])
    assert result.diverged and result.diverged_at == 2 and result.steps_done == 2
    _, before = load_checkpoint(tmp_path / "step1.h5")
    assert before["diverged"] is False
    states = {}
    for step in (10, 20):
        model, attrs = load_checkpoint(tmp_path / f"step{step}.h5")
        assert attrs["diverged"] is True and attrs["diverged_at"] == 2 and attrs["step"] == step
        states[step] = model.state_dict()
        assert all(torch.isfinite(v).all() for v in states[step].values())  # the last finite state
    assert all(torch.equal(states[10][k], states[20][k]) for k in states[10])
    curve, cattrs = read_curve(tmp_path / "curve.h5")
    assert cattrs["diverged"] is True and cattrs["diverged_at"] == 2
    assert curve["train/step"].tolist() == [1, 2]
    assert not (tmp_path / "snapshot.pt").exists()


def test_unusable_snapshots_are_errors_not_restarts(tmp_path, tiny):
    cfg = TrainConfig(steps=20, batch_size=32, lr=1e5, log_every=10, snapshot_every=1, augment=False)
    with pytest.raises(TrainingDiverged):
        run(tmp_path, tiny, cfg)
    snapshot = tmp_path / "snapshot.pt"
    good = snapshot.read_bytes()
    with pytest.raises(SnapshotError, match="snapshot of a different run \\(its seed differ"):
        run(tmp_path, tiny, cfg, seed=1)
    with pytest.raises(SnapshotError, match="its config differ"):
        other = TrainConfig(steps=20, batch_size=32, lr=1e-3, log_every=10, snapshot_every=1, augment=False)
        run(tmp_path, tiny, other)
    snapshot.write_bytes(good[: len(good) // 2])
    with pytest.raises(SnapshotError, match=f"unreadable training snapshot.*rm -f {snapshot}"):
        run(tmp_path, tiny, cfg)


def test_throughput_switches_keep_the_computation(tmp_path, tiny):
    base = TrainConfig(steps=4, batch_size=32, log_every=2)
    states = {}
    for name, flags in {"base": {}, "channels_last": {"channels_last": True}, "bf16": {"bf16_autocast": True}}.items():
        cfg = TrainConfig(**{**base.__dict__, **flags})
        run(tmp_path / name, tiny, cfg, steps=[4])
        model, attrs = load_checkpoint(tmp_path / name / "step4.h5")
        assert attrs["config"]["channels_last"] == cfg.channels_last and np.isfinite(attrs["train_loss"])
        states[name] = model.state_dict()
    for key, value in states["base"].items():  # same maths, other kernels: equal up to rounding
        torch.testing.assert_close(states["channels_last"][key], value, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(states["bf16"][key].float(), value.float(), rtol=0.1, atol=0.05)


@pytest.mark.parametrize("width", [2, 4, 16])
def test_parameter_count_without_building_is_the_built_models(width):
    import hessdepth as hd

    for depth in (8, 14, 20, 44):
        for arch in ("resnet", "simple"):
            assert hd.parameter_count(depth, width) == hd.count_params(hd.build_model(arch, depth, width))
    assert hd.parameter_count(20, 16) == 269_722  # the paper's ResNet-20 (He et al.: 0.27M)


def test_a_checkpoint_names_its_net_as_the_identity_module_says():
    assert set(model_attrs(seeded_model("resnet", 8, width=4, seed=0))) == set(identity.NET)
    assert identity.of_run(("resnet8", 1, 30)) == {"model": "resnet8", "seed": 1, "step": 30}
