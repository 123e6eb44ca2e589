# mtl_reco: every target sets up the virtual environment first (idempotent).
# Python 3.11 is required (the pinned stack is checked on it).

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export KEDRO_DISABLE_TELEMETRY := true

.PHONY: setup run test test-fast lint format viz mlflow-ui benchmarks clean-data

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel (an open requirement would pull a CUDA build)
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test,dev,bench]"
	$(BIN)/python -m pip check
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with test/dev/bench extras

run: $(STAMP)  ## the main job: data processing, all five experiments, comparison
	$(BIN)/kedro run

test: $(STAMP)  ## the full test suite (what CI runs)
	$(BIN)/python -m pytest -n 2

test-fast: $(STAMP)  ## everything except the slow end-to-end runs
	$(BIN)/python -m pytest -n 2 -m "not slow"

lint: $(STAMP)  ## ruff, mypy (strict on modeling), import-linter contracts
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/mtl_reco/modeling
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

viz: $(STAMP)  ## build the kedro-viz static site into build/
	$(BIN)/kedro viz build

mlflow-ui: $(STAMP)  ## open the MLflow UI on the local tracking store
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --port 5000

clean-data:  ## delete every generated artefact under data/ (keeps the folders)
	find data -type f ! -name .gitkeep -delete
