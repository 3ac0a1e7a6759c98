"""Rule summary: every model x seed x step in summary.h5 / summary.csv / summary_by_model.csv."""

from hessdepth import workflow as wf
from hessdepth.identity import of_run
from hessdepth.summary import aggregate_by_model, summarize
from hessdepth.tables import write_summary

wf.setup_job(snakemake.log[0])
params = snakemake.params
summary = summarize(
    snakemake.input.lanczos,
    snakemake.input.moments,
    snakemake.input.checkpoints,
    density=params.density,
    stats=params.stats,
    expect=[of_run((m, int(s), int(t))) for m, s, t in params.runs],
    settings=params.settings,
)
by_model = aggregate_by_model(summary.rows, params.stats["confidence"])
write_summary(
    snakemake.output.h5,
    snakemake.output.csv,
    snakemake.output.by_model,
    summary,
    by_model,
    attrs={"density": params.density, "stats": params.stats, "settings": params.settings},
)
