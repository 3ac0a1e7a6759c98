"""Rule figure: one of the paper's six figures (params.figure) as PDF and PNG."""

from hessdepth import workflow as wf
from hessdepth.plots import make_figure, save_figure

wf.setup_job(snakemake.log[0])
fig = make_figure(snakemake.params.figure, dict(snakemake.input.items()), dict(snakemake.params.items()))
save_figure(fig, snakemake.output.pdf, snakemake.output.png)
