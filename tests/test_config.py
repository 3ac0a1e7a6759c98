"""The configuration is checked whole, before any job: every problem gets its own message."""

import copy
from pathlib import Path

import pytest
import torch
import yaml

from hessdepth import workflow as wf
from hessdepth.hvp import DEFAULT_GRAPH_CACHE_GB
from hessdepth.probes import DEFAULT_LOCKSTEP

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


def merged(*overrides):
    """config.yaml with presets laid over it, the way Snakemake merges --configfile."""
    config = copy.deepcopy(BASE)

    def update(target, source):
        for key, value in source.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                update(target[key], value)
            else:
                target[key] = value

    for override in overrides:
        update(config, override)
    return config


@pytest.mark.parametrize("preset", [None, "demo", "test", "cifar_cpu"])
def test_shipped_configs_are_valid(preset):
    if preset is None:
        wf.check_config(merged(), SCHEMA)
        return
    path = ROOT / f"config/{preset}.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} not present")
    wf.check_config(merged(yaml.safe_load(path.read_text())), SCHEMA)


def problems(config):
    with pytest.raises(wf.ConfigError) as err:
        wf.check_config(config, SCHEMA)
    return str(err.value)


def test_every_problem_is_reported_at_once():
    config = merged(
        {
            "colour": "blue",
            "models": {"depths": [8, 21]},
            "train": {"steps": 1000, "checkpoints": [500, 2000], "batch_size": 0},
            "hessian": {"bn_mode": "eval"},
            "dataset": "imagenet",
        }
    )
    message = problems(config)
    assert "('colour' was unexpected)" in message
    assert "train.batch_size: 0 must be an integer >= 1" in message
    assert "hessian.bn_mode: 'eval' is not one of ['batch', 'running']" in message
    assert "dataset: 'imagenet' is not one of ['cifar10', 'synthetic']" in message
    assert "models.depths: depth must be 6n+2" in message and "got 21" in message
    assert "checkpoint 2000 is past the last step train.steps = 1000" in message
    assert "problem(s)" in message and "config/schema.yaml" in message


def test_figures_must_use_trained_models_and_steps():
    config = merged(
        {
            "models": {"depths": [8, 20], "archs": ["resnet", "simple"]},
            "train": {"steps": 100, "checkpoints": [50, 100]},
            "figures": {
                "gradnorms": {"depth": 32, "step": 50},
                "depth_densities": {"arch": "simple", "depths": [8, 20], "step": 70},
                "moments": {"step": 60},
                "densities_steps": {"depth": 20, "steps": [50, 100]},
                "curves": [8, 44],
            },
        }
    )
    message = problems(config)
    assert "figures.gradnorms: depth 32 is not trained" in message
    assert "figures.depth_densities: step 70 is not a checkpoint" in message
    assert "figures.moments: step 60 is not a checkpoint" in message
    assert "figures.curves: depth 44 is not trained" in message
    assert "densities_steps" not in message


def test_single_arch_cannot_draw_comparisons():
    message = problems(merged({"models": {"archs": ["simple"]}}))
    assert "figures.gradnorms: arch 'resnet' is not trained" in message


def test_grid_and_subset_sizes():
    message = problems(merged({"density": {"grid_range": [5, -5]}, "hessian": {"samples": 1234}}))
    assert "density.grid_range: lower end 5 must be below upper end -5" in message
    assert "hessian.samples: 1234 must be a multiple of the 10 classes" in message


def test_curvature_steps_are_checkpoints_and_hold_the_figures_step():
    on = {"blocks": True, "gauss_newton": False}
    message = problems(merged({"curvature": {**on, "steps": [80000, 5]}}))
    assert "curvature.steps: step 5 is not a checkpoint" in message
    assert "figures 7 and 8 are drawn at figures.moments.step = 10000, which is not among [5, 80000]" in message
    wf.check_config(merged({"curvature": {**on, "steps": [10000]}}), SCHEMA)
    wf.check_config(merged({"curvature": {"steps": [80000]}}), SCHEMA)  # stages off: no figure to draw
    wf.check_config(merged({"curvature": {"steps": [5]}}), SCHEMA)  # stages off: their steps are not used
    assert "curvature.probes: 1 is less than the minimum of 2" in problems(merged({"curvature": {"probes": 1}}))


def test_strings_from_snakemake_cli_are_parsed_where_the_schema_wants_no_string(tmp_path):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"")
    cli = {
        "train": {"steps": "100000", "augment": "false", "lr": "0.05", "lr_milestones": ["0.5"]},
        "data": {"md5": "null", "archive": str(archive)},
        "hessian": {"bn_mode": "running"},
    }
    coerced = wf.coerce_cli_strings(cli, SCHEMA)
    assert coerced["train"] == {"steps": 100000, "augment": False, "lr": 0.05, "lr_milestones": [0.5]}
    assert coerced["data"] == {"md5": None, "archive": str(archive)}
    assert coerced["hessian"] == {"bn_mode": "running"}
    wf.check_config(merged(coerced), SCHEMA)


def test_integer_keys_refuse_floats():
    config = merged(
        {
            "train": {"steps": 20.0, "checkpoints": [10, 20]},
            "lanczos": {"iterations": 8.0},
            "hessian": {"samples": 60.0},
        }
    )
    message = problems(config)
    assert "train.steps must be an integer, got 20.0; write 20" in message
    assert "lanczos.iterations must be an integer, got 8.0; write 8" in message
    assert "hessian.samples must be an integer or null, got 60.0; write 60" in message
    cli = wf.coerce_cli_strings({"moments": {"probes": "8.0"}}, SCHEMA)  # --config moments="{probes: 8.0}"
    assert "moments.probes must be an integer, got 8.0" in problems(merged(cli))


SYNTHETIC = {"dataset": "synthetic", "data": {"synthetic": {"n_train": 200}}}


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            {**SYNTHETIC, "train": {"batch_size": 256}},
            "train.batch_size: 256 is larger than the training set (200 images: data.synthetic.n_train = 200); "
            "lower it to at most 200",
        ),
        (
            {"data": {"half": 0}, "hessian": {"samples": 30000}},
            "hessian.samples: 30000 is more than a class-balanced subset of the training set (25000 images: "
            "class-balanced half 0 (data.half) of CIFAR-10's 50,000) can hold; ask for at most 25000",
        ),
        (
            {"gradnorms": {"samples": 60000}},
            "gradnorms.samples: 60000 is more than a class-balanced subset of the "
            "training set (50000 images: CIFAR-10's 50,000) can hold",
        ),
        ({"gradnorms": {"samples": 55}}, "gradnorms.samples: 55 must be a multiple of the 10 classes"),
        (
            {**SYNTHETIC, "data": {**SYNTHETIC["data"], "half": 1}, "gradnorms": {"samples": None, "batch_size": 1000}},
            "gradnorms.batch_size: 1000 is larger than the images it batches, the training set (100 images: "
            "class-balanced half 1 (data.half) of data.synthetic.n_train = 200); lower it to at most 100",
        ),
        (
            {"hessian": {"samples": 60, "batch_size": 100}},
            "hessian.batch_size: 100 is larger than the images it batches, the 60 of hessian.samples; "
            "lower it to at most 60",
        ),
    ],
    ids=[
        "train-batch",
        "hessian-samples-half",
        "gradnorms-samples",
        "gradnorms-multiple",
        "gradnorms-batch",
        "hessian-batch",
    ],
)
def test_sizes_the_training_set_cannot_fill(override, expected):
    assert expected in problems(merged(override))


def test_sizes_up_to_the_training_set_are_valid():
    wf.check_config(merged({"data": {"half": 1}, "hessian": {"samples": 25000, "batch_size": 25000}}), SCHEMA)
    wf.check_config(
        merged(
            SYNTHETIC,
            {
                "train": {"batch_size": 200},
                "hessian": {"samples": None, "batch_size": 200},
                "gradnorms": {"samples": None, "batch_size": 200},
            },
        ),
        SCHEMA,
    )


def test_cuda_device_must_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        assert f"device: '{device}' asked for, but CUDA is not available" in problems(merged({"device": device}))
    wf.check_config(merged({"device": "auto"}), SCHEMA)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    wf.check_config(merged({"device": "cuda:1"}), SCHEMA)
    assert "this machine has 2 CUDA device(s), cuda:0 to cuda:1" in problems(merged({"device": "cuda:2"}))


def test_scientific_notation_from_the_cli_is_a_number():
    # Snakemake reads --config density="{sigma2: 1e-5, ...}" with YAML's base loader: every value a string
    cli = {"density": {"sigma2": "1e-5", "spacing_factor": "2.5E-1", "grid_range": ["-2e+1", "6e1"]}}
    coerced = wf.coerce_cli_strings(cli, SCHEMA)
    assert coerced["density"] == {"sigma2": 1e-5, "spacing_factor": 0.25, "grid_range": [-20.0, 60.0]}
    wf.check_config(merged(coerced), SCHEMA)


def test_md5_in_upper_case_is_valid():
    wf.check_config(merged({"data": {"md5": BASE["data"]["md5"].upper()}}), SCHEMA)


def test_config_yaml_states_the_librarys_speed_defaults():
    """Speed-only settings have one default each: the library's, which config.yaml repeats."""
    assert BASE["hessian"]["graph_cache_gb"] == DEFAULT_GRAPH_CACHE_GB
    assert BASE["lanczos"]["lockstep"] == DEFAULT_LOCKSTEP
