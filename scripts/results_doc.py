"""Rule results_doc: the Markdown results document, generated from the summary CSVs only."""

import os
from pathlib import Path

import hessdepth as hd
from hessdepth import workflow as wf
from hessdepth.document import publishable_config, render_results
from hessdepth.tables import read_csv

wf.setup_job(snakemake.log[0])
out = Path(snakemake.output.md)
tables = [snakemake.input.csv, snakemake.input.by_model, *snakemake.input.curvature]
curvature = [read_csv(p) for p in snakemake.input.curvature]  # per run, per model; none when the stages are off
text = render_results(
    read_csv(snakemake.input.csv),
    read_csv(snakemake.input.by_model),
    figures=[os.path.relpath(p, out.parent) for p in snakemake.input.figures],
    config=publishable_config(snakemake.params.config),
    machine=snakemake.params.machine,
    wall_time=wf.run_time_note(snakemake.input.data, snakemake.params.benchmarks),
    sources=[os.path.relpath(p, out.parent) for p in tables],
    data_source=hd.describe_dataset(snakemake.input.data),
    curvature=tuple(curvature) or None,
    hessian_images=snakemake.params.config["hessian"]["samples"] or hd.training_set_size(snakemake.input.data),
)
out.write_text(text)
