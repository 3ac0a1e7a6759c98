"""Rule curvature_summary: summary_curvature.csv (per run) and summary_curvature_by_model.csv."""

from hessdepth import workflow as wf
from hessdepth.summary import (
    CURVATURE_BY_MODEL_COLUMNS,
    CURVATURE_COLUMNS,
    aggregate_curvature,
    summarize_curvature,
)
from hessdepth.tables import write_csv

wf.setup_job(snakemake.log[0])
stats = snakemake.params.stats
rows = summarize_curvature(
    snakemake.input.blocks,
    snakemake.input.gauss_newton,
    stats=stats,
    checkpoints=snakemake.input.checkpoints,
    settings=snakemake.params.settings,
)
write_csv(snakemake.output.csv, rows, CURVATURE_COLUMNS)
write_csv(snakemake.output.by_model, aggregate_curvature(rows, stats["confidence"]), CURVATURE_BY_MODEL_COLUMNS)
