# hessdepth: Ghorbani, Krishnan & Xiao (2019), "The Effect of Network Depth on the Optimization
# Landscape", reproduced as a workflow. `snakemake --cores all` runs config.yaml;
# `snakemake --cores all --configfile config/demo.yaml` is the offline demo.
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/hessian.smk"
include: "rules/curvature.smk"
include: "rules/aggregate.smk"
include: "rules/figure_inputs.smk"
include: "rules/figures.smk"


rule all:
    input:
        all_targets(),
    default_target: True
