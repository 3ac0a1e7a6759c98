"""Validation of the workflow configuration: every problem reported at once, before any job runs."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import numpy as np
import torch
import yaml

from ..data import CIFAR10_TRAIN_IMAGES
from ..models import check_depth, parameter_count
from ..training import train_problems


class ConfigError(ValueError):
    """The configuration has problems; the message lists each one."""


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


# JSON Schema counts 20.0 as an integer; here an integer key takes only an int (not a float, not a bool)
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)
_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "null": "null",
    "array": "a list",
    "object": "a mapping",
}


def _type_problem(error: jsonschema.ValidationError) -> str:
    wanted = _types(error.schema)
    value = error.instance
    fix = f"; write {int(value)}" if "integer" in wanted and isinstance(value, float) and value.is_integer() else ""
    return f"{_where(error.path)} must be {' or '.join(_TYPE_NAMES[t] for t in wanted)}, got {value!r}{fix}"


def _schema_problems(config: dict, schema: dict) -> list[str]:
    problems = []
    for error in sorted(_Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path))):
        if error.validator == "additionalProperties":
            allowed = ", ".join(sorted(error.schema.get("properties", {})))
            problems.append(f"{_where(error.path)}: {error.message}; allowed keys: {allowed}")
        elif error.validator == "type":
            problems.append(_type_problem(error))
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
            problems.append(f"train.checkpoints: checkpoint {ckpt} is past the last step train.steps = {steps}")

    def need(where: str, arch_list, depth, step=None):
        for arch in arch_list:
            if arch not in archs:
                problems.append(f"{where}: arch {arch!r} is not trained (models.archs = {sorted(archs)})")
        if depth not in depths:
            problems.append(f"{where}: depth {depth} is not trained (models.depths = {sorted(depths)})")
        if step is not None and step not in checkpoints:
            problems.append(f"{where}: step {step} is not a checkpoint (train.checkpoints = {sorted(checkpoints)})")

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
    stages_on = curvature["blocks"] or curvature["gauss_newton"]
    for step in (curvature["steps"] or []) if stages_on else []:  # steps matter only with a stage on
        if step not in checkpoints:
            problems.append(
                f"curvature.steps: step {step} is not a checkpoint (train.checkpoints = {sorted(checkpoints)})"
            )
    step = figures["moments"]["step"]
    if stages_on and curvature["steps"] and step not in curvature["steps"]:
        problems.append(
            f"curvature.steps: figures 7 and 8 are drawn at figures.moments.step = {step}, "
            f"which is not among {sorted(curvature['steps'])}"
        )
    lo, hi = config["density"]["grid_range"]
    if lo >= hi:
        problems.append(f"density.grid_range: lower end {lo} must be below upper end {hi}")
    return problems


def _repeat_problems(config: dict) -> list[str]:
    """Figures that ask for a thing twice."""
    figures, problems = config["figures"], []
    for where, values in (
        ("figures.depth_densities.depths", figures["depth_densities"]["depths"]),
        ("figures.densities_steps.steps", figures["densities_steps"]["steps"]),
        ("figures.curves", figures["curves"]),
    ):
        if len(set(values)) < len(values):
            problems.append(f"{where}: {values} asks for the same value twice; give different ones")
    return problems


# Past any machine: a run whose estimated job memory or time is beyond these is refused before any
# job. The estimates are lower bounds, so only what no machine can run is refused.
MAX_JOB_BYTES = 4 * 2**40  # 4 TiB
MAX_JOB_SECONDS = 365 * 86400  # a year
# Rough cost of one image through one layer in training (ResNet-20: a recent GPU, two CPU cores); the
# runtime requests of rules/common.smk are sized from it too.
SECONDS_PER_IMAGE_LAYER = {"gpu": 4e-6, "cpu": 2e-4}
SIGMA2_MAX = 1e-2  # density.sigma2: the kernel s.d. is sqrt(sigma2 * max(1, lambda_max - lambda_min))


def _sizes(n: float, unit: str) -> str:
    return f"{n / 2**40:,.3g} TiB" if unit == "bytes" else f"{n / (365 * 86400):,.3g} years"


def _scale_problems(config: dict) -> list[str]:
    """Sizes past any machine, a Lanczos run longer than the operator, a kernel wider than any
    spectrum, and an archive that is not there."""
    models, train, lanczos, problems = config["models"], config["train"], config["lanczos"], []
    width, batch = models["width"], train["batch_size"]
    depths = [d for d in models["depths"] if (d - 2) % 6 == 0 and d >= 8]
    if not depths:
        return problems
    deepest = max(depths)
    activations = batch * (deepest / 3) * width * 32 * 32 * 4  # the first stage's float32 outputs alone
    if activations > MAX_JOB_BYTES:
        problems.append(
            f"models.depths: depth {deepest} needs at least {_sizes(activations, 'bytes')} of activations to "
            f"train on batches of {batch} (its first stage's outputs alone), past any machine "
            f"({_sizes(MAX_JOB_BYTES, 'bytes')}); use a smaller depth, width or batch"
        )
        return problems  # the estimates below would be as far past
    seconds = train["steps"] * batch * deepest * SECONDS_PER_IMAGE_LAYER["gpu"]
    if seconds > MAX_JOB_SECONDS:
        problems.append(
            f"train.steps: {train['steps']} steps of {batch} images through {deepest} layers take about "
            f"{_sizes(seconds, 'seconds')} on a GPU ({SECONDS_PER_IMAGE_LAYER['gpu']:g} s per image and layer), "
            "past any machine; train for fewer steps"
        )
    smallest, largest = parameter_count(min(depths), width), parameter_count(deepest, width)
    if lanczos["iterations"] > smallest:
        problems.append(
            f"lanczos.iterations: {lanczos['iterations']} is more than the {smallest:,} parameters of the "
            f"depth-{min(depths)} nets (a Lanczos run finds at most as many eigenvalues as the operator has "
            f"dimensions); use at most {smallest:,} (paper: about 90)"
        )
    in_lockstep = lanczos["lockstep"] if isinstance(lanczos["lockstep"], int) else 1
    basis = in_lockstep * lanczos["iterations"] * largest * 8
    if basis > MAX_JOB_BYTES:
        problems.append(
            f"lanczos.iterations: {in_lockstep} Lanczos bases of {lanczos['iterations']} float64 vectors of the "
            f"depth-{deepest} nets' {largest:,} parameters take {_sizes(basis, 'bytes')}, past any machine; "
            "use fewer iterations (or a smaller lanczos.lockstep)"
        )
    sigma2 = config["density"]["sigma2"]
    if sigma2 > SIGMA2_MAX:
        problems.append(
            f"density.sigma2: {sigma2:g} makes the kernel (s.d. sqrt(sigma2 * max(1, spectrum width))) as wide as "
            f"the spectra it smooths; use at most {SIGMA2_MAX:g} (paper: 1e-5), or density.spacing_factor"
        )
    archive = config["data"]["archive"]
    if config["dataset"] == "cifar10" and archive is not None and not Path(archive).is_file():
        problems.append(
            f"data.archive: there is no file {archive!r} (relative paths start at the run directory); give the "
            "path of a cifar-10-python.tar.gz, or null to download it from data.url"
        )
    return problems


def data_settings(config: dict) -> dict:
    """What the run's data.h5 must be made from: ``dataset``, ``half``, and the archive's ``md5``
    (None: any archive; either letter case) or the ``synthetic`` set's size and seed."""
    data = config["data"]
    made = {"dataset": config["dataset"], "half": data["half"]}
    if config["dataset"] == "synthetic":
        made["synthetic"] = dict(data["synthetic"])
    else:
        made["md5"] = data["md5"] and data["md5"].lower()
    return made


def training_class_counts(config: dict) -> np.ndarray:
    """Training images per class that the jobs see: synthetic n_train or CIFAR-10's 50,000, cut by data.half."""
    n = config["data"]["synthetic"]["n_train"] if config["dataset"] == "synthetic" else CIFAR10_TRAIN_IMAGES
    counts = n // 10 + (np.arange(10) < n % 10)  # both datasets spread their images evenly over 10 classes
    half = config["data"]["half"]
    if half is None:
        return counts
    return counts // 2 if half == 0 else counts - counts // 2  # as balanced_half cuts each class


def _training_set(config: dict, n: int) -> str:
    """The training set's size and where it comes from, for messages."""
    synthetic = config["dataset"] == "synthetic"
    source = f"data.synthetic.n_train = {config['data']['synthetic']['n_train']}" if synthetic else "CIFAR-10's 50,000"
    half = config["data"]["half"]
    return f"{n} images" + (f": {source}" if half is None else f": class-balanced half {half} (data.half) of {source}")


def _size_problems(config: dict) -> list[str]:
    """Batch sizes and subsets that the training set cannot fill."""
    counts = training_class_counts(config)
    n, subset_limit = int(counts.sum()), 10 * int(counts.min())
    training_set = f"the training set ({_training_set(config, n)})"
    problems = []
    if config["train"]["batch_size"] > n:
        problems.append(
            f"train.batch_size: {config['train']['batch_size']} is larger than {training_set}; lower it to at most {n}"
        )
    for section in ("hessian", "gradnorms"):
        samples, batch_size = config[section]["samples"], config[section]["batch_size"]
        if samples is not None and samples % 10:
            problems.append(
                f"{section}.samples: {samples} must be a multiple of the 10 classes (class-balanced subset)"
            )
        elif samples is not None and samples > subset_limit:
            problems.append(
                f"{section}.samples: {samples} is more than a class-balanced subset of {training_set} "
                f"can hold; ask for at most {subset_limit}, or null for the whole training set"
            )
        elif batch_size > (samples or n):
            batched = f"the {samples} of {section}.samples" if samples else training_set
            problems.append(
                f"{section}.batch_size: {batch_size} is larger than the images it batches, {batched}; "
                f"lower it to at most {samples or n}"
            )
    return problems


def _device_problems(config: dict) -> list[str]:
    """``cuda`` or ``cuda:N`` asked for where this machine has no such device (``auto`` always works)."""
    device = config["device"]
    match = re.fullmatch(r"cuda(?::([0-9]+))?", device)
    if not match:
        return []
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(match[1] or 0) < count:
        return []
    if not count:
        return [
            f"device: {device!r} asked for, but CUDA is not available on this machine; set device: auto "
            "(CUDA where present, else the CPU) or cpu"
        ]
    return [
        f"device: {device!r} asked for, but this machine has {count} CUDA device(s), cuda:0 to "
        f"cuda:{count - 1}; pick one of those, or auto"
    ]


def _resolve(schema: dict, root: dict) -> dict:
    if "$ref" in schema:
        return root["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _types(schema: dict) -> list[str]:
    types = schema.get("type", [])
    return [types] if isinstance(types, str) else types


class _NumberLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's floats: ``1e-5`` and ``1.0e5`` are numbers (YAML 1.1 reads them as strings)."""


_NumberLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+.0123456789")
)


def coerce_cli_strings(config, schema: dict, root: dict | None = None):
    """Parse the strings Snakemake's ``--config key="{...}"`` leaves inside dicts and lists.

    ``--config train="{steps: 400}"`` gives ``{"steps": "400"}``; where the schema wants no
    string, the value is read as YAML (``"400"`` -> 400, ``"null"`` -> None, ``"1e-5"`` ->
    1e-05). Returns a new object.
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
            return yaml.load(config, Loader=_NumberLoader)
        except yaml.YAMLError:
            return config
    return config


def check_config(config: dict, schema: dict) -> None:
    """Raise ConfigError listing every problem of ``config``; return None when it is valid."""
    problems = _schema_problems(config, schema)
    if isinstance(config.get("train"), dict):  # bounds and schedule, for the keys the schema let through
        flagged = {re.split(r"[: ]", p, maxsplit=1)[0] for p in problems}
        problems += [p for p in train_problems(config["train"]) if p.split(":")[0] not in flagged]
    for check in (_cross_key_problems, _repeat_problems, _scale_problems, _size_problems, _device_problems):
        try:
            problems += check(config)
        except (KeyError, TypeError, AttributeError, ValueError):
            pass  # a key this check reads is missing or mistyped: the schema said so already
    problems = list(dict.fromkeys(problems))  # the first of repeated messages, in order
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"the configuration has {len(problems)} problem(s):\n{lines}\n"
            "Fix these keys in config.yaml or the file given with --configfile "
            "(every key is described in config/schema.yaml and README.md)."
        )
