# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Offline by default for the demo and tests: nothing here needs the Hub.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install lock demo report notebook test test-fast lint format mlflow-ui clean

# Every install takes its versions from the lock (pip constraints), so one commit installs, trains
# and scores the same on any day; the lock is checked against pyproject.toml first.
LOCK := requirements.lock
PIP_LOCKED := $(PY) -m pip install --quiet -c $(LOCK)
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP_LOCKED) pip packaging
	$(PY) scripts/check_lock.py pyproject.toml $(LOCK)
	$(PIP_LOCKED) -e '.[dev]'
	touch $(STAMP)

NOTEBOOK_STAMP := $(VENV)/.notebook-installed
$(NOTEBOOK_STAMP): pyproject.toml $(LOCK) $(STAMP)
	$(PIP_LOCKED) -e '.[dev,notebook]'
	touch $(NOTEBOOK_STAMP)

install: $(STAMP)  ## create .venv and install lorabench with its dev tools, at the lock's versions

# After changing pyproject.toml: pins what is new and keeps every other pin
# (LOCK_FLAGS=--upgrade moves every package to its newest allowed version). torch's pin drops the
# local `+cpu` label so the same lock takes a CUDA build of that version on a GPU machine. Its last
# line records the pyproject.toml it was made from: install refuses a lock older than an edit.
LOCK_FLAGS ?=
lock:  ## refresh requirements.lock from pyproject.toml (then commit it)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --all-extras --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) -o $(LOCK) pyproject.toml
	sed -i 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' $(LOCK)
	$(PY) scripts/check_lock.py --stamp pyproject.toml $(LOCK)

# The demo's stages: the pretrained tiny bases (cached: once per machine), the user's grid, the
# paper's Table 4 rows with the untuned base rows, then the report with the findings section.
# The two bases pretrain side by side, one core each (a line each when they start and end).
PARALLEL_PRETRAINING := hydra/launcher=local_parallel hydra.launcher.n_jobs=2 training.progress_bar=false
demo: $(STAMP)  ## pretrained tiny bases, LoRA × FT × data grid, Table 4 rows, base rows, report (CPU, offline)
	$(PY) -m lorabench.demo.pretraining -m profile=demo model=tiny,tiny-13b $(PARALLEL_PRETRAINING)
	$(PY) sweep.py -m profile=demo method=lora,ft data=0.6m,2m,4m
	$(PY) sweep.py experiment=paper_table4 profile=demo
	$(PY) -m lorabench.analysis experiment=lorabench-demo out=reports/demo
	@echo
	@echo "Runs: MLflow store mlruns/mlflow.db, experiment lorabench-demo."
	@echo "Tables, findings and figures: reports/demo/report.md"
	@echo "Open the runs with:  make mlflow-ui   (then http://127.0.0.1:5000)"
	@echo "Or the analysis notebook:  make notebook"

report: $(STAMP)  ## tables, findings and figures of the demo experiment from MLflow
	$(PY) -m lorabench.analysis experiment=lorabench-demo out=reports/demo

notebook: $(NOTEBOOK_STAMP)  ## JupyterLab on analysis/scaling_trends.ipynb (the demo's runs)
	$(VENV)/bin/jupyter lab analysis/scaling_trends.ipynb

lint: $(STAMP)  ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# One pytest worker per core (TEST_WORKERS=0: in this process, as a debugger wants); a test
# file stays on one worker, so its module fixtures (trained models, servers) are built once.
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: lint  ## lint + every test, slow ones included (what CI runs)
	$(PYTEST)

test-fast: lint  ## lint + the fast tests only
	$(PYTEST) -m "not slow"

mlflow-ui: $(STAMP)  ## browse the local store
	@echo "Runs: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root mlruns/artifacts --host 127.0.0.1 --port 5000

clean:
	rm -rf outputs multirun reports .cache
