# Per checkpoint, three independent jobs: SLQ (Lanczos), Hutchinson moments, gradient norms.
# Lanczos and Hutchinson save each finished probe beside their output and resume from it. Every
# Hessian job is the lanczos rule with its own output, settings and resources (`use rule`); a
# `with:` block replaces the resources whole, so each states all of them.


rule lanczos:
    input:
        checkpoint=checkpoint_file("{model}", "{seed}", "{step}"),
        data=data_file(),
    output:
        lanczos_file("{model}", "{seed}", "{step}"),
    params:
        settings=SETTINGS["lanczos"],
    log:
        hessian_job_log("lanczos"),
    benchmark:
        hessian_job_benchmark("lanczos")
    threads: config["threads"]
    resources:
        graph_cache_mb=SPEED["graph_cache_mb"],
        lockstep_probes=SPEED["lockstep_probes"],
        mem_mb=16000,
        runtime=hvp_runtime("lanczos", lambda s: s["iterations"]),
        gpu=int(USE_GPU),
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/hessian_job.py"


use rule lanczos as moments with:
    output:
        moments_file("{model}", "{seed}", "{step}"),
    params:
        settings=SETTINGS["moments"],
    log:
        hessian_job_log("moments"),
    benchmark:
        hessian_job_benchmark("moments"),
    resources:
        graph_cache_mb=SPEED["graph_cache_mb"],
        lockstep_probes=SPEED["lockstep_probes"],
        mem_mb=8000,
        runtime=hvp_runtime("moments", lambda s: 2),
        gpu=int(USE_GPU),


rule gradnorms:
    input:
        checkpoint=checkpoint_file("{model}", "{seed}", "{step}"),
        data=data_file(),
    output:
        gradnorms_file("{model}", "{seed}", "{step}"),
    params:
        settings=SETTINGS["gradnorms"],
    log:
        hessian_job_log("gradnorms"),
    benchmark:
        hessian_job_benchmark("gradnorms")
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=lambda wc: runtime_minutes(hessian_samples("gradnorms") * depth_of(wc)),
        gpu=int(USE_GPU),
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/gradnorms.py"
