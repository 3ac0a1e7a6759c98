# Optional per-checkpoint stages (config `curvature`), at CURVATURE_STEPS: Hutchinson moments of
# each diagonal block of the Hessian, and of its Gauss-Newton part beside the Hessian on the same
# probes; then their table. Like the moments job, each saves every finished probe and resumes.
# gauss_newton computes H again rather than reusing moments.h5: two more products per probe buy
# a file that is paired probe by probe whatever `moments` says, and a job that needs no other.


localrules:
    curvature_summary,


rule block_moments:
    input:
        checkpoint=checkpoint_file("{model}", "{seed}", "{step}"),
        data=data_file(),
    output:
        blocks_file("{model}", "{seed}", "{step}"),
    params:
        settings=curvature_params(),
    log:
        f"{LOGS}/block_moments/{{model}}_seed{{seed}}_step{{step}}.log",
    benchmark:
        f"{BENCHMARKS}/block_moments/{{model}}_seed{{seed}}_step{{step}}.tsv"
    threads: config["threads"]
    resources:
        graph_cache_mb=GRAPH_CACHE_MB,
        mem_mb=8000,
        runtime=hvp_runtime("curvature", lambda s: 2 * len(hd.resnet_blocks())),
        gpu=int(USE_GPU),
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/hessian_job.py"


rule gauss_newton:
    input:
        checkpoint=checkpoint_file("{model}", "{seed}", "{step}"),
        data=data_file(),
    output:
        gauss_newton_file("{model}", "{seed}", "{step}"),
    params:
        settings=curvature_params(),
    log:
        f"{LOGS}/gauss_newton/{{model}}_seed{{seed}}_step{{step}}.log",
    benchmark:
        f"{BENCHMARKS}/gauss_newton/{{model}}_seed{{seed}}_step{{step}}.tsv"
    threads: config["threads"]
    resources:
        graph_cache_mb=GRAPH_CACHE_MB,
        mem_mb=8000,
        runtime=hvp_runtime("curvature", lambda s: 4),  # 2 Hessian, 2 Gauss-Newton products (about as costly)
        gpu=int(USE_GPU),
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/hessian_job.py"


rule curvature_summary:
    input:
        blocks=[blocks_file(*run) for run in runs(steps=CURVATURE_STEPS)] if CURVATURE["blocks"] else [],
        gauss_newton=(
            [gauss_newton_file(*run) for run in runs(steps=CURVATURE_STEPS)] if CURVATURE["gauss_newton"] else []
        ),
        checkpoints=[checkpoint_file(*run) for run in runs(steps=CURVATURE_STEPS)],
    output:
        csv=table_file("summary_curvature.csv"),
        by_model=table_file("summary_curvature_by_model.csv"),
    params:
        stats=config["stats"],
        settings=curvature_params(),
    log:
        f"{LOGS}/curvature_summary.log",
    benchmark:
        f"{BENCHMARKS}/curvature_summary.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/curvature_summary.py"
