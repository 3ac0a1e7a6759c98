"""Each per-checkpoint job's settings, built once from the validated config.

What defines a job's result goes into its rule's params, so changing it reruns the job. What only
changes its speed and memory (the graph cache, the SLQ lockstep group) goes into its resources, so
changing it reruns nothing; :func:`run_options` reads them back inside the job.
"""

from __future__ import annotations

from .analysis import RunOptions

# config keys that change no result, by section
SPEED_ONLY = {"hessian": ("graph_cache_gb",), "lanczos": ("lockstep",)}
# what says which curvature stages and steps run, not what each computes
CURVATURE_SWITCHES = ("blocks", "gauss_newton", "steps")


def _result_part(config: dict, section: str, drop: tuple[str, ...] = ()) -> dict:
    skip = set(SPEED_ONLY.get(section, ())) | set(drop)
    return {k: v for k, v in config[section].items() if k not in skip}


def job_settings(config: dict) -> dict[str, dict]:
    """Rule name -> the settings that define its result (the rule's ``settings`` param)."""
    hessian = {**_result_part(config, "hessian"), "device": config["device"]}
    curvature = {**hessian, **_result_part(config, "curvature", CURVATURE_SWITCHES)}
    return {
        "lanczos": {**hessian, **_result_part(config, "lanczos")},
        "moments": {**hessian, **config["moments"]},
        "block_moments": curvature,
        "gauss_newton": curvature,
        "gradnorms": {**config["gradnorms"], "bn_mode": config["hessian"]["bn_mode"], "device": config["device"]},
    }


def speed_resources(config: dict) -> dict[str, int]:
    """The Hessian jobs' speed-only settings as Snakemake resources (integers: 0 lockstep
    probes means "auto")."""
    lockstep = config["lanczos"]["lockstep"]
    return {
        "graph_cache_mb": round(config["hessian"]["graph_cache_gb"] * 1024),
        "lockstep_probes": 0 if lockstep == "auto" else lockstep,
    }


def run_options(resources) -> RunOptions:
    """A job's :class:`RunOptions` from the resources :func:`speed_resources` gave its rule."""
    return RunOptions(
        graph_cache_gb=resources.graph_cache_mb / 1024,
        lockstep=resources.lockstep_probes or "auto",
    )
