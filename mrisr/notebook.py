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


STAMP = "> **This run:**"


def stamp(path: str | Path) -> str:
    """Write what an executed notebook ran on at the top of its title cell: the ``This run: ...`` line its first
    cell printed (`mrisr.modes.Run`) and papermill's duration, as ``> **This run:** ...; took N min``, replacing
    an earlier stamp. The notebook is rewritten atomically; returns the line."""
    import json

    from mrisr.errors import InputError
    from mrisr.io.atomic import atomic_path

    path = Path(path)
    notebook = json.loads(path.read_text())
    lines = [line for cell in notebook["cells"] if cell["cell_type"] == "code" for output in cell.get("outputs", [])
             for line in "".join(output.get("text", "")).splitlines() if line.startswith("This run:")]
    if not lines:
        raise InputError(path, "no 'This run:' line in its outputs: execute it first (make notebooks-samples)")
    duration = notebook["metadata"].get("papermill", {}).get("duration")
    line = f"{STAMP}{lines[0][len('This run:'):]}" + (f"; took {duration / 60:.1f} min." if duration else ".")
    title = next(cell for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    text = [t for t in "".join(title["source"]).split("\n\n") if not t.startswith(STAMP)]
    title["source"] = "\n\n".join(text[:1] + [line] + text[1:])
    with atomic_path(path, ".ipynb") as tmp:
        tmp.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return line


if __name__ == "__main__":  # python -m mrisr.notebook stamp NOTEBOOK...
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "stamp":
        sys.exit("usage: python -m mrisr.notebook stamp NOTEBOOK.ipynb ...")
    for name in sys.argv[2:]:
        print(f"{name}: {stamp(name)}")
