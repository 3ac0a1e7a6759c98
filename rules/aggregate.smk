# Every model x seed x checkpoint in one table, and the results document generated from it
# (and from the curvature table, when the curvature stages are on: rules/curvature.smk).


localrules:
    summary,
    results_doc,


rule summary:
    input:
        lanczos=[lanczos_file(*run) for run in runs()],
        moments=[moments_file(*run) for run in runs()],
        checkpoints=[checkpoint_file(*run) for run in runs()],
    output:
        h5=table_file("summary.h5"),
        csv=table_file("summary.csv"),
        by_model=table_file("summary_by_model.csv"),
    params:
        density=config["density"],
        stats=config["stats"],
        runs=runs(),
        settings={"lanczos": SETTINGS["lanczos"], "moments": SETTINGS["moments"], "train": config["train"]},
    log:
        f"{LOGS}/summary.log",
    benchmark:
        f"{BENCHMARKS}/summary.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/summary.py"


rule results_doc:
    input:
        csv=rules.summary.output.csv,
        by_model=rules.summary.output.by_model,
        curvature=curvature_tables(),
        figures=[figure_file(fig, "png") for fig in FIGURES],
        data=data_file(),
    output:
        md=results_doc_file(),
    params:
        config=config,
        machine=hd.machine_description(),
        benchmarks=BENCHMARKS,
    log:
        f"{LOGS}/results_doc.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/results_doc.py"
