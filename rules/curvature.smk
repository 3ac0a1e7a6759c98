# Optional per-checkpoint stages (config `curvature`), at CURVATURE_STEPS: Hutchinson moments of
# each diagonal block of the Hessian, and of its Gauss-Newton part beside the Hessian on the same
# probes; then their table. Like the moments job, each is the lanczos rule with its own output
# (rules/hessian.smk), saves every finished probe and resumes.
# gauss_newton computes H again rather than reusing moments.h5: two more products per probe buy
# a file that is paired probe by probe whatever `moments` says, and a job that needs no other.


localrules:
    curvature_summary,


use rule lanczos as block_moments with:
    output:
        blocks_file("{model}", "{seed}", "{step}"),
    params:
        settings=SETTINGS["block_moments"],
    log:
        hessian_job_log("block_moments"),
    benchmark:
        hessian_job_benchmark("block_moments"),
    resources:
        graph_cache_mb=SPEED["graph_cache_mb"],
        lockstep_probes=SPEED["lockstep_probes"],
        mem_mb=8000,
        runtime=hvp_runtime("curvature", lambda s: 2 * len(hd.resnet_blocks())),
        gpu=int(USE_GPU),


use rule lanczos as gauss_newton with:
    output:
        gauss_newton_file("{model}", "{seed}", "{step}"),
    params:
        settings=SETTINGS["gauss_newton"],
    log:
        hessian_job_log("gauss_newton"),
    benchmark:
        hessian_job_benchmark("gauss_newton"),
    resources:
        graph_cache_mb=SPEED["graph_cache_mb"],
        lockstep_probes=SPEED["lockstep_probes"],
        mem_mb=8000,
        runtime=hvp_runtime("curvature", lambda s: 4),  # 2 Hessian, 2 Gauss-Newton products (about as costly)
        gpu=int(USE_GPU),


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
        settings=SETTINGS["block_moments"],
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
