# CIFAR-10 (downloaded or staged) or the synthetic dataset, converted once to one HDF5 file.


localrules:
    download_cifar10,


rule download_cifar10:
    output:
        download_file(),
    params:
        url=config["data"]["url"],
        md5=config["data"]["md5"],
    log:
        "logs/download_cifar10.log",
    benchmark:
        "benchmarks/download_cifar10.tsv"
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/download_cifar10.py"


rule prepare_data:
    input:
        archive=archive_input,
    output:
        data_file(),
    params:
        settings=DATA_SETTINGS,
    log:
        f"{LOGS}/prepare_data.log",
    benchmark:
        f"{BENCHMARKS}/prepare_data.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/hessdepth.yaml"
    script:
        "../scripts/prepare_data.py"
