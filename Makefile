# One command to install, one to run, one to test. Each target installs what it needs into .venv.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
CORES ?= all

.PHONY: install demo test test-fast cifar-cpu report clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

# The offline demo: synthetic data, the whole DAG, all six figures, summary and report.
demo: install
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	$(BIN)/snakemake --cores 1 --configfile config/demo.yaml --report report.html

# The whole test suite, the real-SLURM test included (it needs root to start the cluster).
test: install
	$(BIN)/python -m pytest

# Everything but the SLURM cluster test.
test-fast: install
	$(BIN)/python -m pytest -m "not slurm"

# Real CIFAR-10 at CPU scale (issue 7): ARCHIVE=path/to/cifar-10-python.tar.gz
cifar-cpu: install
	$(BIN)/snakemake --cores $(CORES) --configfile config/cifar_cpu.yaml \
		--config data='{archive: "$(ARCHIVE)", md5: null}'
