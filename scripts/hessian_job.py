"""Rules lanczos, moments, block_moments, gauss_newton: one checkpoint's analysis, the one named
after the rule (hessdepth.workflow.analysis.ANALYSES)."""

from hessdepth import workflow as wf
from hessdepth.identity import of_path

wf.setup_job(snakemake.log[0], snakemake.threads)
wf.run_analysis(
    snakemake.rule,
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    wf.run_options(snakemake.resources),
    expect=of_path(snakemake.wildcards),
)
