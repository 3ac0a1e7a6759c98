"""Rule lanczos: see hessdepth.analysis.run_lanczos."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../lib")
import hessdepth as hd

hd.setup_job(snakemake.log[0], snakemake.threads)
hd.run_lanczos(
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    graph_cache_gb=snakemake.config["hessian"]["graph_cache_gb"],
    expect=hd.run_identity(snakemake.wildcards),
)
