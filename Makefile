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

.PHONY: demo test install clean

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

clean:
	rm -rf $(VENV) .cache .pytest_cache
