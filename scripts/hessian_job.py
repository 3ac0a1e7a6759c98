"""Rules lanczos, moments, block_moments, gauss_newton: one checkpoint's analysis, the one named
after the rule (hessdepth.workflow.analysis.ANALYSES)."""

from hessdepth import workflow as wf

wf.setup_job(snakemake.log[0], snakemake.threads)
wf.run_analysis(
    snakemake.rule,
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.settings,
    graph_cache_gb=snakemake.resources.graph_cache_mb / 1024,
    expect=wf.run_identity(snakemake.wildcards),
)
