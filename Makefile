# One command to install, one to run, one to test. Each target installs what it needs into .venv.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
CORES ?= all

.PHONY: install demo lint test test-fast cifar-cpu evidence evidence-doc

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

# The offline demo: synthetic data, the whole DAG, all six figures, summary and report.
demo: install
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	$(BIN)/snakemake --cores 1 --configfile config/demo.yaml --report report.html

# Lint and format check (ruff, configured in pyproject.toml); `ruff format .` fixes the format.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The lint, then the whole test suite in two pytest processes side by side, one exit status for
# both: the workflow tests (the real snakemake CLI) in one; the real-SLURM tests (they need root to
# start the cluster) and the unit tests in the other, its report printed after the first's. The
# SLURM tests mostly wait for the scheduler's status poll and a workflow test for its jobs, so one
# process alone leaves a core idle much of the time. The unit tests get one thread: with two they
# contend with the workflow tests' jobs for the same two cores.
BESIDE_REPORT = .pytest-beside.log
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "slurm or not workflow" -p no:cacheprovider > $(BESIDE_REPORT) 2>&1 & beside=$$!; \
	$(BIN)/python -m pytest -m "workflow and not slurm"; workflow_rc=$$?; \
	wait $$beside; beside_rc=$$?; \
	echo "=== the SLURM and unit tests (run beside the workflow tests) ==="; cat $(BESIDE_REPORT); \
	exit $$(( workflow_rc || beside_rc ))

# Everything but the SLURM cluster test.
test-fast: install
	$(BIN)/python -m pytest -m "not slurm"

# Real CIFAR-10 at CPU scale on any archive: make cifar-cpu ARCHIVE=path/to/cifar-10-python.tar.gz
# (MD5=... checks it; the default is the official archive's md5). Without ARCHIVE it downloads
# the official archive and checks that md5. ARCHIVE goes into a quoted YAML string on the shell's
# command line, so characters that would end either are refused.
MD5 ?= c58f30108f718f92721af3b95e74349a
UNSAFE_IN_ARCHIVE = $(strip $(word 2,$(ARCHIVE)) $(foreach c,' " ` \ ; $$,$(findstring $(c),$(ARCHIVE))))
cifar-cpu: install
	$(if $(UNSAFE_IN_ARCHIVE),$(error ARCHIVE='$(ARCHIVE)' holds a space, quote, backquote, backslash, semicolon or dollar; link the archive to a plain path (ln -s "<your file>" cifar.tar.gz) and pass that))
	$(BIN)/snakemake --cores $(CORES) --configfile config/cifar_cpu.yaml \
		--config data="{archive: $(if $(ARCHIVE),'$(abspath $(ARCHIVE))',null), md5: $(MD5)}"

# The committed evidence (docs/evidence/cifar_cpu/): the CPU preset on each class-balanced half
# of the shared CIFAR-10 subset, each half's tables, figures and times recorded in
# docs/evidence/cifar_cpu/records/half{0,1}/ (commit them: a half may run in its own session),
# then one document from both records (make evidence-doc).
SUBSET = ../shared/data/cifar10-subset/cifar-10-python-subset.tar.gz
SUBSET_MD5 = 03223099d0e2676ccf4a9d282a75807c
EVIDENCE_RUNS = runs/cifar_cpu
EVIDENCE_DOC = docs/evidence/cifar_cpu
evidence: install
	$(MAKE) evidence-half0 evidence-half1
	$(MAKE) evidence-doc

evidence-doc: install
	$(BIN)/python scripts/evidence_doc.py --records $(EVIDENCE_DOC)/records --out $(EVIDENCE_DOC)

# The run reads its own copy of the archive: a new session may give ../shared new time stamps,
# which would make Snakemake redo a half that is only to be resumed. The log is appended to.
EVIDENCE_ARCHIVE = $(EVIDENCE_RUNS)/$(notdir $(SUBSET))
evidence-half%: install
	mkdir -p $(EVIDENCE_RUNS)
	test -f $(EVIDENCE_ARCHIVE) || cp $(SUBSET) $(EVIDENCE_ARCHIVE)
	$(BIN)/snakemake --cores $(CORES) --directory $(EVIDENCE_RUNS)/half$* --configfile config/cifar_cpu.yaml \
		--config data="{archive: $(abspath $(EVIDENCE_ARCHIVE)), md5: $(SUBSET_MD5), half: $*}" \
		>> $(EVIDENCE_RUNS)/half$*.log 2>&1
	$(BIN)/python scripts/evidence_doc.py --record $(EVIDENCE_RUNS)/half$* --out $(EVIDENCE_DOC)/records/half$*
