"""Rule gradnorms: see hessdepth.workflow.analysis.run_gradnorms."""

from hessdepth import workflow as wf

wf.setup_job(snakemake.log[0], snakemake.threads)
wf.run_gradnorms(
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    expect=wf.run_identity(snakemake.wildcards),
)
