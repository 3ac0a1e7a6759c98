"""Rule train: one model and seed, checkpoints at the configured steps, resumable snapshots."""

import hessdepth as hd
from hessdepth import workflow as wf

log = wf.setup_job(snakemake.log[0], snakemake.threads)
arch, depth = hd.parse_model_id(snakemake.wildcards.model)
seed = int(snakemake.wildcards.seed)
settings = dict(snakemake.params.train)
steps = settings.pop("checkpoints")
cfg = hd.TrainConfig(**settings)
data, data_attrs = hd.read_dataset_h5(snakemake.input.data, expect=snakemake.params.data)
device = hd.choose_device(snakemake.params.device)
model = hd.seeded_model(arch, depth, width=snakemake.params.width, num_classes=len(data.classes), seed=seed)
log.info(
    "training %s seed %d (%d parameters) on %s for %d steps",
    snakemake.wildcards.model,
    seed,
    hd.count_params(model),
    device,
    cfg.steps,
)
checkpoint_of = dict(zip(sorted(steps), snakemake.output.checkpoints))
result = hd.train(
    model,
    data,
    cfg,
    checkpoint_steps=sorted(steps),
    checkpoint_path=checkpoint_of,
    curve_path=snakemake.output.curve,
    snapshot_path=snakemake.params.snapshot,
    seed=seed,
    device=device,
    attrs=data_attrs,
)
log.info("done: %s", result)
