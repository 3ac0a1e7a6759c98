"""Rule prepare_data: CIFAR-10 archive or synthetic dataset -> one HDF5 file."""

from pathlib import Path

import hessdepth as hd
from hessdepth import workflow as wf

log = wf.setup_job(snakemake.log[0])
params = snakemake.params
if params.dataset == "synthetic":
    s = params.synthetic
    data = hd.synthetic_dataset(s["n_train"], s["n_test"], seed=s["seed"])
    attrs = dict(source=f"synthetic (seed {s['seed']})", md5="", synthetic=True, seed=s["seed"])
else:
    archive = snakemake.input.archive
    data = hd.read_cifar_archive(archive, md5=params.md5)
    attrs = dict(source=Path(archive).name, md5=hd.file_md5(archive), synthetic=False, seed=0)
if params.half is not None:
    data = hd.training_half(data, params.half)
attrs["half"] = "all" if params.half is None else params.half
hd.write_dataset_h5(snakemake.output[0], data, {"dataset": params.dataset, **attrs})
log.info(
    "%s: %d train (half: %s) and %d test images, classes %s",
    params.dataset,
    len(data.train_labels),
    attrs["half"],
    len(data.test_labels),
    data.classes,
)
