"""What every workflow job does first: log to its log file, set CPU threads, describe the machine."""

from __future__ import annotations

import errno
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import yaml

from ..atomic import write_error
from ..device import keep_freed_cpu_memory
from ..h5io import REBUILD_VARIABLE

DEFAULT_RUN = "paper"  # the name of a run of config.yaml alone


def run_name(configured: str | None, configfiles) -> str:
    """The run's name, the folder under results/ and figures/: ``run`` from the config, else the
    stem of the last ``--configfile`` (``config/demo.yaml`` -> ``demo``), else "paper"."""
    if configured:
        return configured
    return Path(configfiles[-1]).stem if configfiles else DEFAULT_RUN


def check_writable(folders) -> None:
    """Raise :class:`~hessdepth.atomic.WriteError` naming the first of ``folders`` (or the nearest
    folder above it that exists) that cannot be written, so a run stops before its first job."""
    for folder in folders:
        existing = Path(folder).absolute()
        while not existing.exists():
            existing = existing.parent
        if not os.access(existing, os.W_OK):
            read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
            raise write_error(folder, OSError(errno.EROFS if read_only else errno.EACCES, str(folder)))


def rebuild_command(configfiles, overrides: dict | None = None) -> str:
    """The command that rebuilds a file ``{path}`` of this run (for :data:`hessdepth.h5io.REBUILD_VARIABLE`):
    the target first, since ``--configfile`` and ``--config`` take several values, then the run's
    own config files and ``--config`` overrides (``key=value`` with the value as YAML; braces
    doubled, as the template is filled with ``str.format``)."""
    options = "".join(f" --configfile {shlex.quote(_shown_path(f))}" for f in configfiles or ())
    if overrides:
        pairs = (
            f"{key}={yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()}"
            for key, value in overrides.items()
        )
        options += " --config " + " ".join(shlex.quote(pair.removesuffix("\n...")) for pair in pairs)
    return "rm -f {path} && snakemake {path} --cores all" + options.replace("{", "{{").replace("}", "}}")


def set_rebuild_command(configfiles, overrides: dict | None = None) -> None:
    """Make every rebuild hint of this process and its jobs name :func:`rebuild_command`."""
    os.environ[REBUILD_VARIABLE] = rebuild_command(configfiles, overrides)


def _shown_path(path) -> str:
    """``path`` relative to the working directory when it lies below it (messages name no machine paths)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def setup_job(log_path: str | os.PathLike | None, threads: int | None = None) -> logging.Logger:
    """Send logging, warnings and stderr (tqdm bars) to ``log_path``; use ``threads`` CPU threads.

    Also keeps freed CPU memory for reuse (:func:`~hessdepth.device.keep_freed_cpu_memory`).
    """
    if log_path is not None:
        stream = open(log_path, "a", buffering=1)
        sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)
    logger = logging.getLogger(__name__)
    if threads:
        cores = len(os.sched_getaffinity(0))
        if threads > cores:
            logger.warning("threads: %d asked for, but this job may use %d cores: using %d", threads, cores, cores)
        torch.set_num_threads(min(threads, cores))
    slurm_job = os.environ.get("SLURM_JOB_ID")
    allocator = "freed memory kept for reuse" if keep_freed_cpu_memory() else "default"
    logger.info(
        "job on %s (pid %d%s), hessdepth from %s, torch %s, %d CPU threads, CPU allocator: %s",
        platform.node(),
        os.getpid(),
        f", SLURM_JOB_ID={slurm_job}" if slurm_job else "",
        Path(__file__).parents[1],
        torch.__version__,
        torch.get_num_threads(),
        allocator,
    )
    return logger


def run_time_note(first_output: str | os.PathLike, benchmark_dir: str | os.PathLike) -> str:
    """Wall time since ``first_output`` was written, and job time summed over Snakemake benchmarks."""
    elapsed = time.time() - os.path.getmtime(first_output)
    job_seconds = []
    for tsv in Path(benchmark_dir).rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        if len(lines) >= 2:
            job_seconds.append(float(lines[-1].split("\t")[0]))
    return (
        f"{elapsed / 60:.1f} min wall clock from the dataset file to this document; "
        f"{sum(job_seconds) / 60:.1f} min of job time summed over {len(job_seconds)} jobs ({benchmark_dir}/)"
    )
