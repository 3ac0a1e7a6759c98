"""Rule gradnorms: see hessdepth.workflow.analysis.run_gradnorms."""

from hessdepth import workflow as wf
from hessdepth.identity import of_path

wf.setup_job(snakemake.log[0], snakemake.threads)
wf.run_gradnorms(
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    expect=of_path(snakemake.wildcards),
)
