# hhforecast: `make run` sets up and serves the forecast; `make test` sets up and runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run train test pytest lint format bench clean quality

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create the venv and install hhforecast with its test tools

train: install ## train a first version on the bundled sample if the registry is empty
	@if $(BIN)/hhforecast registry list --json | grep -q '"version"'; then \
		echo "Registry already has versions; skipping the first training."; \
	else \
		$(BIN)/hhforecast train; \
	fi

run: train ## train if needed, then serve the production version on loopback
	$(BIN)/hhforecast serve --host $(HOST) --port $(PORT)

test: install lint pytest ## lint, type-check and run the whole test suite

pytest: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

bench: train ## wrk: /api/predict vs a bare FastAPI endpoint, and a 10,000-row batch -> docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk"; exit 2; }
	$(BIN)/python bench/run_bench.py --from-make

quality: install ## backtest the model on the sample and simulated fleets; rewrite the tables in docs/model-quality.md
	$(BIN)/python bench/model_quality.py --write docs/model-quality.md

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
