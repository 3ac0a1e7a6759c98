# One training job per model and seed; checkpoints at the configured steps, a resumable snapshot
# every train.snapshot_every steps (not a declared output, so a failed job keeps it).


rule train:
    input:
        data=data_file(),
    output:
        checkpoints=[
            checkpoint_file("{model}", "{seed}", step) for step in STEPS
        ],
        curve=curve_file("{model}", "{seed}"),
    params:
        train=config["train"],
        data=DATA_SETTINGS,
        width=config["models"]["width"],
        device=config["device"],
        snapshot=lambda wc: snapshot_file(wc.model, wc.seed),
    log:
        f"{LOGS}/train/{{model}}_seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{model}}_seed{{seed}}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=train_runtime,
        gpu=int(USE_GPU),
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/train.py"
