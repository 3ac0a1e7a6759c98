"""Rule gauss_newton: see hessdepth.workflow.analysis.run_gauss_newton."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../lib")
from hessdepth import workflow as wf

wf.setup_job(snakemake.log[0], snakemake.threads)
wf.run_gauss_newton(
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    graph_cache_gb=snakemake.config["hessian"]["graph_cache_gb"],
    expect=wf.run_identity(snakemake.wildcards),
)
