# The two set-up commands of the README. Each makes its own virtual environment in .venv (ignored by git).
#   make demo   run the main job on the built-in phantom
#   make test   run the test suite (what CI runs, through .ci/run)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# Keep every tool's caches inside the repository.
export MPLCONFIGDIR           := $(CURDIR)/.cache/matplotlib
export TORCH_HOME             := $(CURDIR)/.cache/torch
export IPYTHONDIR             := $(CURDIR)/.cache/ipython
export JUPYTER_RUNTIME_DIR    := $(CURDIR)/.cache/jupyter-runtime
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/torchinductor
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test install clean notebooks notebooks-smoke notebooks-samples

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,dev]'
	touch $@

demo: install
	$(BIN)/mrisr demo

test: install
	$(BIN)/python -m pytest

# Every notebook, executed in place (outputs, tables and animations regenerated), in one of three modes, each
# title cell then stamped with what it ran on and how long it took (mrisr.notebook.run_notebooks):
#   notebooks          full: the downloaded datasets (data/knees, ACDC) on a GPU workstation
#   notebooks-samples  samples: the real scans of ../shared/data at the seed's network size (one GPU: within 20 min;
#                      on a CPU a reduced size, said in each notebook's first line); tables to docs/results/
#   notebooks-smoke    smoke: a tiny network for one epoch on the same scans (what the tests run)
# NOTEBOOKS="02_knee3d_train 03_knee3d_compare" runs some of them.
NOTEBOOKS ?= 00_quickstart 01_knee_data 02_knee3d_train 03_knee3d_compare 04_cardiac2d_four_models \
             05_selfsupervised_knee

notebooks: install
	$(BIN)/python -m mrisr.notebook run full $(NOTEBOOKS)

notebooks-samples: install
	$(BIN)/python -m mrisr.notebook run samples $(NOTEBOOKS)

notebooks-smoke: install
	$(BIN)/python -m mrisr.notebook run smoke $(NOTEBOOKS)

clean:
	rm -rf $(VENV) .cache .pytest_cache
