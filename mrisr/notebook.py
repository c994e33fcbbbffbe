"""What every notebook does first: work from the project folder, with every tool's cache inside it."""

from __future__ import annotations

import os
from pathlib import Path

CACHES = {"MPLCONFIGDIR": "matplotlib", "TORCH_HOME": "torch", "IPYTHONDIR": "ipython",
          "JUPYTER_RUNTIME_DIR": "jupyter-runtime", "TORCHINDUCTOR_CACHE_DIR": "torchinductor"}
"""Environment variable -> its folder under ``<project>/.cache`` (matplotlib, torch hub, IPython, Jupyter,
TorchInductor): the same as the Makefile's."""


def project_dir() -> Path:
    """Change to the project folder (the parent of ``notebooks/`` when a notebook runs from there, else the current
    folder) and point each cache variable that is not set yet into its ``.cache``; returns the folder. Paths in the
    notebooks are relative to it. Call it before importing matplotlib."""
    root = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
    os.chdir(root)
    for variable, folder in CACHES.items():
        os.environ.setdefault(variable, str(root / ".cache" / folder))
    return root
