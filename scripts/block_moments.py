"""Rule block_moments: see hessdepth.workflow.analysis.run_block_moments."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../lib")
from hessdepth import workflow as wf

wf.setup_job(snakemake.log[0], snakemake.threads)
wf.run_block_moments(
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    graph_cache_gb=snakemake.config["hessian"]["graph_cache_gb"],
    expect=wf.run_identity(snakemake.wildcards),
)
