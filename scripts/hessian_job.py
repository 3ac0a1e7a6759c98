"""Rules lanczos, moments, block_moments, gauss_newton: one checkpoint's analysis, the runner
named after the rule (hessdepth.workflow.analysis.run_<rule>)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../lib")
from hessdepth import workflow as wf

RUNNERS = {
    "lanczos": wf.run_lanczos,
    "moments": wf.run_moments,
    "block_moments": wf.run_block_moments,
    "gauss_newton": wf.run_gauss_newton,
}

wf.setup_job(snakemake.log[0], snakemake.threads)
RUNNERS[snakemake.rule](
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    graph_cache_gb=snakemake.config["hessian"]["graph_cache_gb"],
    expect=wf.run_identity(snakemake.wildcards),
)
