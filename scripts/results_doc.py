"""Rule results_doc: the Markdown results document, generated from the summary CSVs only."""
import os
import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../lib")
import hessdepth as hd
from hessdepth.findings import publishable_config, render_results
from hessdepth.summary import read_csv

hd.setup_job(snakemake.log[0])
out = Path(snakemake.output.md)
text = render_results(
    read_csv(snakemake.input.csv),
    read_csv(snakemake.input.by_model),
    figures=[os.path.relpath(p, out.parent) for p in snakemake.input.figures],
    config=publishable_config(snakemake.params.config),
    machine=snakemake.params.machine,
    wall_time=hd.run_time_note(snakemake.input.data, snakemake.params.benchmarks),
    sources=[os.path.relpath(p, out.parent) for p in (snakemake.input.csv, snakemake.input.by_model)],
    data_source=hd.describe_dataset(snakemake.input.data),
)
out.write_text(text)
