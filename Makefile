# optimal-scaling: two commands on a fresh machine with only python3.
#   make lab    create .venv, install, open the course in JupyterLab
#   make test   create .venv, install, run the whole suite (ruff, unit tests, notebooks)

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# On a machine without an NVIDIA GPU, torch comes from PyTorch's CPU wheel index (a few hundred
# MB; the public index's Linux wheel is the CUDA build, several GB). If that index cannot be
# reached, pip falls back to the plain pin. TORCH_INDEX= turns it off.
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)
# Extra arguments for JupyterLab, e.g. make lab LAB_ARGS="--no-browser --port 8899"
LAB_ARGS ?=
# Per-cell timeout (seconds) for the notebook run, and parallel workers. Fast-mode cells take
# under a minute even with two notebooks sharing two cores. (A client stall that used to last
# exactly this timeout in widget cells is worked around in conftest.py.)
NB_TIMEOUT ?= 180
WORKERS ?= 2
# Per-test limit (seconds) for the unit tests: a test that hangs fails with its stack instead
# of stalling CI (the slowest test takes ~40 s on 2 cores).
TEST_TIMEOUT ?= 300
# Each test worker and notebook kernel computes with one thread while $(WORKERS) run side by
# side: two processes with two BLAS threads each on two cores wait on each other (measured on
# 2 cores: unit tests 72 s → 41 s, notebooks 158 s → 68 s). THREADS= keeps torch's default.
THREADS ?= OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}

# JupyterLab refuses to start as root (containers, cloud VMs) unless told it may.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

BIN := $(VENV)/bin
# The install stamp depends on pyproject.toml: editing it reinstalls, otherwise a rerun takes seconds.
STAMP := $(VENV)/.installed

NOTEBOOK_DIRS := lectures solutions exercises

.PHONY: lab test install lint unit notebooks notebooks-solutions notebooks-exercises \
        sync exercises check test-all clean gpu-wheels

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# torch goes first at an exact version (the CPU build without an NVIDIA GPU, see TORCH_INDEX);
# skipped when the venv already has a torch.
$(STAMP): pyproject.toml | $(BIN)/python
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "torch already installed: $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		$(BIN)/python -m pip install --timeout 15 --retries 1 \
			$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "torch==$(TORCH_VERSION)" \
		|| $(BIN)/python -m pip install "torch==$(TORCH_VERSION)"; \
	fi
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

lab: install
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(ALLOW_ROOT) $(LAB_ARGS) lectures/00_welcome.ipynb

lint: install
	$(BIN)/ruff check conftest.py optimal_scaling tests tools benchmarks lectures solutions exercises

# Unit tests, including the drift checks (pairs, outputs, stale exercises).
unit: install
	$(THREADS) $(BIN)/python tools/pytest_ok.py $(BIN)/python -m pytest -n $(WORKERS) --timeout=$(TEST_TIMEOUT) -m "not slow" tests

# Every notebook, in fast mode. Lectures and solutions run strict (a failing self-check raises);
# exercises run with their stubs and must still reach the end.
notebooks: notebooks-solutions notebooks-exercises

notebooks-solutions: install
	OPTIMAL_SCALING_FAST=$${OPTIMAL_SCALING_FAST:-1} OPTIMAL_SCALING_STRICT=1 $(THREADS) \
	$(BIN)/python tools/pytest_ok.py $(BIN)/python -m pytest -p no:cacheprovider -n $(WORKERS) \
		--durations=0 --nbmake --nbmake-timeout=$(NB_TIMEOUT) lectures solutions

notebooks-exercises: install
	OPTIMAL_SCALING_FAST=$${OPTIMAL_SCALING_FAST:-1} OPTIMAL_SCALING_STRICT=0 $(THREADS) \
	$(BIN)/python tools/pytest_ok.py $(BIN)/python -m pytest -p no:cacheprovider -n $(WORKERS) \
		--durations=0 --nbmake --nbmake-timeout=$(NB_TIMEOUT) exercises

test: lint unit notebooks
	@echo "make test: all green"

test-all: install
	$(THREADS) $(BIN)/python -m pytest -n $(WORKERS) tests

# Regenerate every .ipynb from its Jupytext .py source (outputs stripped).
sync: install
	$(BIN)/python -m optimal_scaling.course.notebooks sync $(NOTEBOOK_DIRS)

# Regenerate exercises/ from solutions/.
exercises: install
	$(BIN)/python -m optimal_scaling.course.exercises solutions exercises

# Fail if any pair drifted or any exercise is stale (the tests check the same).
check: install
	$(BIN)/python -m optimal_scaling.course.notebooks check $(NOTEBOOK_DIRS)
	$(BIN)/python -m optimal_scaling.course.exercises solutions exercises --check

# Wheels of the packages the GPU image lacks (the suite needs plotly and submitit), for the
# device session: they travel in .whl/ and benchmarks/gpu_check.sh installs them there.
GPU_WHEELS = plotly==7.1.0 narwhals==2.29.0 submitit==1.5.4
gpu-wheels: install
	$(BIN)/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
	    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
	    -d .whl $(GPU_WHEELS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
