# hhforecast: `make run` sets up and serves the forecast; `make test` sets up and runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Test workers: one per core, at most 4 (each worker trains the shared test versions once).
# Four workers even on two cores: much of the suite waits (servers starting, processes
# killed and restarted, outages held), and the waits of one worker overlap another's work.
PYTEST_ARGS ?= -n 4 --durations=10

.PHONY: install install-dev run train test pytest lint format bench footprint bench-dataset bench-mlflow bench-log bench-log-serving bench-alerts bench-alerts-once bench-registry clean quality

# pip prints a line per package it collects, downloads (with a progress bar) and installs:
# TensorFlow alone is a download of several hundred MB, so silence would look like a hang.
$(BIN)/python:
	@echo "==> [1/3] creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] upgrading pip"
	$(BIN)/python -m pip install --upgrade --progress-bar on pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "==> [3/3] installing hhforecast and what it needs to run (TensorFlow is the large one)"
	$(BIN)/python -m pip install --progress-bar on -e .
	@touch $@
	@echo "==> installed"

$(DEV_STAMP): $(RUN_STAMP)
	@echo "==> installing the test tools (pytest, pytest-xdist, ruff, mypy, selenium) and MLflow"
	$(BIN)/python -m pip install --progress-bar on -e '.[dev,mlflow,postgres]'
	@touch $@

install: $(RUN_STAMP) ## create the venv and install hhforecast with what running it needs

install-dev: $(DEV_STAMP) ## install hhforecast with its test tools as well

train: install ## train a first version on the bundled sample if the registry is empty
	@if $(BIN)/hhforecast registry list --json | grep -q '"version"'; then \
		echo "Registry already has versions; skipping the first training."; \
	else \
		$(BIN)/hhforecast train; \
	fi

run: train ## train if needed, then serve the production version on loopback
	$(BIN)/hhforecast serve --host $(HOST) --port $(PORT)

test: install-dev lint pytest ## lint, type-check and run the whole test suite (in parallel)

pytest: install-dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

bench: install-dev train ## wrk: /api/predict vs a bare FastAPI endpoint, and a 10,000-row batch -> docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk"; exit 2; }
	$(BIN)/python bench/run_bench.py --from-make

footprint: install-dev train ## one serve worker's RSS and time to ready (goal: 250 MB, 3 s) -> docs/benchmarks.md
	$(BIN)/python bench/serve_footprint.py --write docs/benchmarks.md

bench-dataset: install ## dataset build on ~900,000 flight rows + 150,000 events vs pandas.read_csv -> docs/benchmarks.md
	$(BIN)/python bench/dataset_build.py --repeats 5 --write docs/benchmarks.md
bench-mlflow: train install-dev ## wrk: hhforecast serve vs serve --follow-mlflow vs mlflow models serve -> docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk"; exit 2; }
	$(BIN)/python bench/mlflow_bench.py

bench-log: install-dev ## monitor on 26 weeks logged once vs asked a million times, SQLite and PostgreSQL (goal: 2x); bytes per forecast -> docs/benchmarks.md
	$(BIN)/python bench/log_scale.py --start-postgres --write docs/benchmarks.md

bench-log-serving: install-dev train ## wrk: /api/predict with the log in PostgreSQL vs the bare endpoint (goal: 0.85x) -> docs/benchmarks.md
	$(BIN)/python bench/log_serving_postgres.py --write docs/benchmarks.md

bench-alerts: install ## monitor's alert rule under a monthly retrain, 6 simulated fleets: healthy months alerted, +15% shifts flagged -> docs/benchmarks.md
	$(BIN)/python bench/monitor_alerts.py --schedule monthly --write docs/benchmarks.md

bench-alerts-once: install ## the same rule with one version serving two years, 48 fleets (the table of docs/drift.md)
	$(BIN)/python bench/monitor_alerts.py --schedule once

bench-registry: install ## registry list, promote and registry check at 1,000 versions against one -> docs/benchmarks.md
	$(BIN)/python bench/registry_scale.py --write docs/benchmarks.md

quality: install ## backtest the model on the sample and simulated fleets; rewrite the tables in docs/model-quality.md
	$(BIN)/python bench/model_quality.py --write docs/model-quality.md

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
