"""Rule download_cifar10: fetch the official CIFAR-10 archive and check its md5."""

from pathlib import Path

import hessdepth as hd
from hessdepth import workflow as wf

log = wf.setup_job(snakemake.log[0])
out = Path(snakemake.output[0])
path = hd.download_cifar10(out.parent, url=snakemake.params.url, md5=snakemake.params.md5)
if path != out:  # the url names the file differently: keep the workflow's name
    path.replace(out)
log.info("downloaded %s (md5 %s)", out, hd.file_md5(out))
