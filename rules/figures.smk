# The paper's six figures, and figures 7 and 8 when the curvature stages are on (at figure 3's
# step), each its own target: `snakemake figures/fig3_moments.pdf` builds only what that figure
# needs. One rule; rules/figure_inputs.smk says what each figure reads.


rule figure:
    input:
        unpack(figure_inputs),
    output:
        pdf=figure_file("{figure}", "pdf"),
        png=report(figure_file("{figure}", "png"), caption="../report/captions/figure.rst", category="Figures"),
    params:
        figure=lambda wc: wc.figure,
        expect=figure_expect,
        depth=lambda wc: FIGURE_SETTINGS.get(wc.figure, {}).get("depth"),
        step=lambda wc: FIGURE_SETTINGS.get(wc.figure, {}).get("step"),
        stats=config["stats"],
        dataset=DATASET,
        caption=caption_text,
    log:
        f"{LOGS}/figures/{{figure}}.log",
    benchmark:
        f"{BENCHMARKS}/figures/{{figure}}.tsv"
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/figure.py"
