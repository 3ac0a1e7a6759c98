# Per checkpoint, three independent jobs: SLQ (Lanczos), Hutchinson moments, gradient norms.
# Lanczos and Hutchinson save each finished probe beside their output and resume from it.


rule lanczos:
    input:
        checkpoint=checkpoint_file("{model}", "{seed}", "{step}"),
        data=data_file(),
    output:
        lanczos_file("{model}", "{seed}", "{step}"),
    params:
        settings=hessian_params("lanczos"),
    log:
        f"{LOGS}/lanczos/{{model}}_seed{{seed}}_step{{step}}.log",
    benchmark:
        f"{BENCHMARKS}/lanczos/{{model}}_seed{{seed}}_step{{step}}.tsv"
    threads: config["threads"]
    resources:
        graph_cache_mb=GRAPH_CACHE_MB,
        mem_mb=16000,
        runtime=hvp_runtime("lanczos", lambda s: s["iterations"]),
        gpu=int(USE_GPU),
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/hessian_job.py"


rule moments:
    input:
        checkpoint=checkpoint_file("{model}", "{seed}", "{step}"),
        data=data_file(),
    output:
        moments_file("{model}", "{seed}", "{step}"),
    params:
        settings=hessian_params("moments"),
    log:
        f"{LOGS}/moments/{{model}}_seed{{seed}}_step{{step}}.log",
    benchmark:
        f"{BENCHMARKS}/moments/{{model}}_seed{{seed}}_step{{step}}.tsv"
    threads: config["threads"]
    resources:
        graph_cache_mb=GRAPH_CACHE_MB,
        mem_mb=8000,
        runtime=hvp_runtime("moments", lambda s: 2),
        gpu=int(USE_GPU),
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/hessian_job.py"


rule gradnorms:
    input:
        checkpoint=checkpoint_file("{model}", "{seed}", "{step}"),
        data=data_file(),
    output:
        gradnorms_file("{model}", "{seed}", "{step}"),
    params:
        settings={**config["gradnorms"], "bn_mode": config["hessian"]["bn_mode"],
                  "device": config["device"]},
    log:
        f"{LOGS}/gradnorms/{{model}}_seed{{seed}}_step{{step}}.log",
    benchmark:
        f"{BENCHMARKS}/gradnorms/{{model}}_seed{{seed}}_step{{step}}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=lambda wc: runtime_minutes(hessian_samples("gradnorms") * depth_of(wc)),
        gpu=int(USE_GPU),
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/gradnorms.py"
