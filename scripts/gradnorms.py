"""Rule gradnorms: see hessdepth.analysis.run_gradnorms."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../lib")
import hessdepth as hd

hd.setup_job(snakemake.log[0], snakemake.threads)
hd.run_gradnorms(
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    expect=hd.run_identity(snakemake.wildcards),
)
