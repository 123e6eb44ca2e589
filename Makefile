# mtl_reco: every target sets up the virtual environment first (idempotent).
# Python 3.11, 3.12 or 3.13 (requires-python >=3.11,<3.14; the pinned stack is
# checked on each). PYTHON defaults to the first of python3.11, python3.12,
# python3.13 that runs (a pyenv shim for a version not selected does not);
# override with `make setup PYTHON=python3.13` (or a path).
# torch==2.13.0 is installed first: on 3.11 pip finds the CPU wheel on local
# disk; on 3.12/3.13 it comes from PyPI as the CUDA build (with its nvidia-*
# wheels, several GB; it runs on the CPU as well). TORCH_PIP_ARGS adds pip
# options to that one install, e.g. an index that serves CPU-only wheels:
#   make setup PYTHON=python3.12 TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"

SUPPORTED_PYTHONS := python3.11 python3.12 python3.13
PYTHON ?= $(shell for p in $(SUPPORTED_PYTHONS); do $$p -c '' >/dev/null 2>&1 && { echo $$p; break; }; done)
TORCH_PIP_ARGS ?=
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export KEDRO_DISABLE_TELEMETRY := true

.PHONY: setup run test test-fast lint format viz mlflow-ui benchmarks gpu-check gpu-wheels clean-data

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no supported Python found: none of $(SUPPORTED_PYTHONS) runs (Python >=3.11,<3.14 is required; set PYTHON=...)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' 2>/dev/null || { echo "error: PYTHON=$(PYTHON) does not run or is not Python 3.11-3.13 (>=3.11,<3.14 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned (an open requirement would pull the newest CUDA build);
	# the CPU wheel on 3.11 (local disk), PyPI's CUDA build on 3.12/3.13
	$(BIN)/python -m pip install --quiet "torch==2.13.0" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[test,dev,bench,notebook]"
	$(BIN)/python -m pip check
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with test/dev/bench/notebook extras

run: $(STAMP)  ## the main job: data processing, all five experiments, comparison
	$(BIN)/kedro run

test: $(STAMP)  ## the full test suite (what CI runs)
	$(BIN)/python -m pytest -n 2

test-fast: $(STAMP)  ## everything except the slow end-to-end runs
	$(BIN)/python -m pytest -n 2 -m "not slow"

lint: $(STAMP)  ## ruff, mypy (strict over src), import-linter contracts
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

viz: $(STAMP)  ## build the kedro-viz static site into build/
	$(BIN)/kedro viz build

mlflow-ui: $(STAMP)  ## kedro mlflow ui: the MLflow UI on the store of conf/base/mlflow.yml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/kedro mlflow ui

gpu-check: $(STAMP)  ## the GPU check (CUDA training, bf16, torch.compile, throughput, ONNX parity): benchmarks/results/gpu_check.json
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# A GPU machine that has PyTorch but no registry lacks only pydantic and its
# helpers: download their wheels (the versions of this venv) for its Python.
GPU_PYTHON ?= 3.12
GPU_WHEELS := pydantic pydantic_core annotated_types typing_inspection typing_extensions
gpu-wheels: $(STAMP)  ## wheels for `gpu-check` on a bare GPU machine (Python $(GPU_PYTHON)) into .whl/
	rm -rf .whl && mkdir -p .whl
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: \
	  --python-version $(GPU_PYTHON) --implementation cp \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform manylinux_2_28_x86_64 -d .whl \
	  $$($(BIN)/python -c "import importlib.metadata as m; print(' '.join(f'{n}=={m.version(n)}' for n in '$(GPU_WHEELS)'.split()))")
	@ls .whl

clean-data:  ## delete every generated artefact under data/ (keeps the folders)
	find data -type f ! -name .gitkeep -delete
