"""Rule prepare_data: CIFAR-10 archive or synthetic dataset -> one HDF5 file that records the data
settings it was made from (hessdepth.workflow.data_settings; training checks them)."""

from pathlib import Path

import hessdepth as hd
from hessdepth import workflow as wf

log = wf.setup_job(snakemake.log[0])
settings = dict(snakemake.params.settings)
if settings["dataset"] == "synthetic":
    s = settings["synthetic"]
    data = hd.synthetic_dataset(s["n_train"], s["n_test"], seed=s["seed"])
    attrs = dict(source=f"synthetic (seed {s['seed']})", md5="", synthetic=True, seed=s["seed"])
else:
    archive = snakemake.input.archive
    data = hd.read_cifar_archive(archive, md5=settings["md5"])
    settings["md5"] = hd.file_md5(archive)  # the archive's own, also where the config checks none
    attrs = dict(source=Path(archive).name, md5=settings["md5"], synthetic=False, seed=0)
half = settings["half"]
if half is not None:
    data = hd.training_half(data, half)
attrs["half"] = "all" if half is None else half
hd.write_dataset_h5(snakemake.output[0], data, {"dataset": settings["dataset"], **attrs, "settings": settings})
log.info(
    "%s: %d train (half: %s) and %d test images, classes %s",
    settings["dataset"],
    len(data.train_labels),
    attrs["half"],
    len(data.test_labels),
    data.classes,
)
