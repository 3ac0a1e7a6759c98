"""Validation of the workflow configuration: every problem reported at once, before any job runs."""
from __future__ import annotations

import jsonschema
import yaml

from .models import check_depth


class ConfigError(ValueError):
    """The configuration has problems; the message lists each one."""


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _schema_problems(config: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        if error.validator == "additionalProperties":
            allowed = ", ".join(sorted(error.schema.get("properties", {})))
            problems.append(f"{_where(error.path)}: {error.message}; allowed keys: {allowed}")
        else:
            problems.append(f"{_where(error.path)}: {error.message}")
    return problems


def _depth_problems(where: str, depths) -> list[str]:
    problems = []
    for depth in depths:
        try:
            check_depth(depth)
        except ValueError as err:
            problems.append(f"{where}: {err}")
    return problems


def _cross_key_problems(config: dict) -> list[str]:
    models, train, figures = config["models"], config["train"], config["figures"]
    depths, archs = set(models["depths"]), set(models["archs"])
    checkpoints, steps = set(train["checkpoints"]), train["steps"]
    problems = _depth_problems("models.depths", models["depths"])
    for ckpt in sorted(checkpoints):
        if ckpt > steps:
            problems.append(
                f"train.checkpoints: checkpoint {ckpt} is past the last step train.steps = {steps}"
            )

    def need(where: str, arch_list, depth, step=None):
        for arch in arch_list:
            if arch not in archs:
                problems.append(f"{where}: arch {arch!r} is not trained (models.archs = {sorted(archs)})")
        if depth not in depths:
            problems.append(f"{where}: depth {depth} is not trained (models.depths = {sorted(depths)})")
        if step is not None and step not in checkpoints:
            problems.append(
                f"{where}: step {step} is not a checkpoint (train.checkpoints = {sorted(checkpoints)})"
            )

    both = ("resnet", "simple")
    fig = figures["gradnorms"]
    need("figures.gradnorms", both, fig["depth"], fig["step"])
    fig = figures["depth_densities"]
    for depth in fig["depths"]:
        need("figures.depth_densities", [fig["arch"]], depth, fig["step"])
    if figures["moments"]["step"] not in checkpoints:
        problems.append(
            f"figures.moments: step {figures['moments']['step']} is not a checkpoint "
            f"(train.checkpoints = {sorted(checkpoints)})"
        )
    fig = figures["densities_steps"]
    for step in fig["steps"]:
        need("figures.densities_steps", both, fig["depth"], step)
    for depth in figures["curves"]:
        need("figures.curves", both, depth)
    curvature = config["curvature"]
    for step in curvature["steps"] or []:
        if step not in checkpoints:
            problems.append(
                f"curvature.steps: step {step} is not a checkpoint (train.checkpoints = {sorted(checkpoints)})"
            )
    step = figures["moments"]["step"]
    if (curvature["blocks"] or curvature["gauss_newton"]) and curvature["steps"] and step not in curvature["steps"]:
        problems.append(f"curvature.steps: figures 7 and 8 are drawn at figures.moments.step = {step}, "
                        f"which is not among {sorted(curvature['steps'])}")
    lo, hi = config["density"]["grid_range"]
    if lo >= hi:
        problems.append(f"density.grid_range: lower end {lo} must be below upper end {hi}")
    samples = config["hessian"]["samples"]
    if samples is not None and samples % 10:
        problems.append(f"hessian.samples: {samples} must be a multiple of the 10 classes (class-balanced subset)")
    # dict.fromkeys keeps the first of repeated messages, in order
    return list(dict.fromkeys(problems))


def _resolve(schema: dict, root: dict) -> dict:
    if "$ref" in schema:
        return root["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _types(schema: dict) -> list[str]:
    types = schema.get("type", [])
    return [types] if isinstance(types, str) else types


def coerce_cli_strings(config, schema: dict, root: dict | None = None):
    """Parse the strings Snakemake's ``--config key="{...}"`` leaves inside dicts and lists.

    ``--config train="{steps: 400}"`` gives ``{"steps": "400"}``; where the schema wants no
    string, the value is read as YAML (``"400"`` -> 400, ``"null"`` -> None). Returns a new object.
    """
    root = root or schema
    schema = _resolve(schema, root)
    if isinstance(config, dict):
        props = schema.get("properties", {})
        return {k: coerce_cli_strings(v, props.get(k, {}), root) if k in props else v for k, v in config.items()}
    if isinstance(config, list):
        return [coerce_cli_strings(v, schema.get("items", {}), root) for v in config]
    if not isinstance(config, str) or "enum" in schema:
        return config
    if "string" not in _types(schema) or (config == "null" and "null" in _types(schema)):
        try:
            return yaml.safe_load(config)
        except yaml.YAMLError:
            return config
    return config


def check_config(config: dict, schema: dict) -> None:
    """Raise ConfigError listing every problem of ``config``; return None when it is valid."""
    problems = _schema_problems(config, schema)
    try:
        problems += _cross_key_problems(config)
    except (KeyError, TypeError, AttributeError):
        pass  # a key the cross-key rules read is missing or mistyped: the schema said so already
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"the configuration has {len(problems)} problem(s):\n{lines}\n"
            "Fix these keys in config.yaml or the file given with --configfile "
            "(every key is described in config/schema.yaml and README.md)."
        )
