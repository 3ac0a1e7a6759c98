"""The configuration is checked whole, before any job: every problem gets its own message."""
import copy
from pathlib import Path

import pytest
import yaml

import hessdepth as hd

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
        hd.check_config(merged(), SCHEMA)
        return
    path = ROOT / f"config/{preset}.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} not present")
    hd.check_config(merged(yaml.safe_load(path.read_text())), SCHEMA)


def problems(config):
    with pytest.raises(hd.ConfigError) as err:
        hd.check_config(config, SCHEMA)
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
    assert "train.batch_size: 0 is less than the minimum of 1" in message
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
    hd.check_config(merged({"curvature": {**on, "steps": [10000]}}), SCHEMA)
    hd.check_config(merged({"curvature": {"steps": [80000]}}), SCHEMA)  # stages off: no figure to draw
    assert "curvature.probes: 1 is less than the minimum of 2" in problems(merged({"curvature": {"probes": 1}}))


def test_strings_from_snakemake_cli_are_parsed_where_the_schema_wants_no_string():
    cli = {"train": {"steps": "100000", "augment": "false", "lr": "0.05", "lr_milestones": ["0.5"]},
           "data": {"md5": "null", "archive": "/data/x.tar.gz"}, "hessian": {"bn_mode": "running"}}
    coerced = hd.coerce_cli_strings(cli, SCHEMA)
    assert coerced["train"] == {"steps": 100000, "augment": False, "lr": 0.05, "lr_milestones": [0.5]}
    assert coerced["data"] == {"md5": None, "archive": "/data/x.tar.gz"}
    assert coerced["hessian"] == {"bn_mode": "running"}
    hd.check_config(merged(coerced), SCHEMA)
