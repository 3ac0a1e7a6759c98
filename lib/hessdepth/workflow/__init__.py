"""The workflow's glue around the hessdepth library: config validation, job set-up, run names and
rebuild hints, and the per-checkpoint runners that read and write the files between rules.

The Snakefile's rules and ``scripts/*.py`` use this subpackage; the library (``hessdepth``)
never imports it, so a notebook needs none of it (tests/test_architecture.py checks the direction).
"""

from .analysis import ANALYSES, RunOptions, checkpoint_operator, operator_settings, run_analysis, run_gradnorms
from .config import (
    SECONDS_PER_IMAGE_LAYER,
    ConfigError,
    check_config,
    coerce_cli_strings,
    data_settings,
    training_class_counts,
)
from .settings import job_settings, run_options, speed_resources
from .jobs import check_writable, rebuild_command, run_name, run_time_note, set_rebuild_command, setup_job

__all__ = [
    "ANALYSES",
    "SECONDS_PER_IMAGE_LAYER",
    "ConfigError",
    "check_config",
    "check_writable",
    "checkpoint_operator",
    "coerce_cli_strings",
    "data_settings",
    "job_settings",
    "operator_settings",
    "rebuild_command",
    "RunOptions",
    "run_analysis",
    "run_gradnorms",
    "run_name",
    "run_options",
    "run_time_note",
    "set_rebuild_command",
    "setup_job",
    "speed_resources",
    "training_class_counts",
]
