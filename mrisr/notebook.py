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
    folder), point each cache variable that is not set yet into its ``.cache`` and hide the dependencies' import-time
    deprecation notices, as the CLI does (`mrisr.quiet`); returns the folder. Paths in the notebooks are relative to
    it. Call it first, before importing the rest of mrisr, fastai or matplotlib."""
    from mrisr.quiet import quiet_dependencies

    quiet_dependencies()
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


def show_animation(path: str | Path, root: str | Path | None = None):
    """Show an animation that `mrisr.evaluation.render.animate` wrote, inline in a notebook: a Markdown link to it where
    git keeps the file (so a fresh clone shows it too), else its middle frame embedded as a PNG, under a line saying
    where the animation is and that git does not keep it. ``root``: the project folder (default the current folder,
    where `project_dir` changed to); the link is relative to ``notebooks/``."""
    import subprocess

    import imageio.v3 as iio
    from IPython.display import Image, Markdown, display

    root = Path(root or Path.cwd()).resolve()
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such animation")
    try:
        inside = path.relative_to(root)
        kept = subprocess.run(["git", "check-ignore", "-q", str(inside)], cwd=root, capture_output=True).returncode == 1
    except (ValueError, OSError):  # outside the project, or no git
        inside, kept = path, False
    if kept:
        return Markdown(f"![{path.name}](../{inside.as_posix()})")
    frames = iio.imread(path, index=None)
    frame = frames[len(frames) // 2]
    display(Markdown(f"`{inside}` (git does not keep it: run this notebook to make it); its middle frame of "
                     f"{len(frames)}:"))
    return Image(data=iio.imwrite("<bytes>", frame, extension=".png"))


NOTEBOOKS = ("00_quickstart", "01_knee_data", "02_knee3d_train", "03_knee3d_compare", "04_cardiac2d_four_models",
             "05_selfsupervised_knee")
"""The notebooks in the order they run (03 reads what 02 trained)."""

MODE_PARAMETERS = {
    "full": {},
    "samples": dict(results_dir="docs/results"),
    "smoke": dict(device="cpu", gif="volume_animations/smoke/quickstart.gif", animations_dir="volume_animations/smoke",
                  gif_step=4, results_dir="runs/smoke_results"),
}
"""Papermill parameters per mode, besides ``mode`` itself (and the VGG16 weights of the samples where they are)."""


def run_notebooks(mode: str, names=NOTEBOOKS, root: str | Path | None = None, **parameters) -> list[str]:
    """Execute the notebooks ``names`` in place (papermill) in ``mode``, one after the other, and `stamp` each.

    Smoke and samples modes take the VGG16 weights of the samples (``vgg16/``, the Oxford weights: no download),
    given by their path relative to the project. ``parameters`` add to or replace `MODE_PARAMETERS`. Stops at the
    first notebook that fails (papermill keeps its outputs up to the failing cell). Returns the stamps."""
    import papermill

    from mrisr.data.samples import sample_dir
    from mrisr.modes import MODES

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    root = Path(root or Path(__file__).resolve().parents[1])
    params = {"mode": mode, **MODE_PARAMETERS[mode]}
    if mode != "full":
        weights = sample_dir() / "vgg16" / "vgg16_features_block1-3.pth"
        params |= {"vgg_weights": os.path.relpath(weights, root), "vgg_normalization": "caffe"}
    params |= parameters
    paths = [root / "notebooks" / f"{name}.ipynb" for name in names]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such notebook; notebooks: {', '.join(NOTEBOOKS)}")
    known = {name for path in paths for name in papermill.inspect_notebook(str(path))}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(f"no notebook of {', '.join(names)} has a parameter {', '.join(unknown)}; theirs: "
                         f"{', '.join(sorted(known))}")
    stamps = []
    for name, path in zip(names, paths):
        papermill.execute_notebook(str(path), str(path), parameters=params, cwd=str(path.parent),
                                   kernel_name="python3", progress_bar=False)
        stamps.append(stamp(path))
        print(f"{name}: {stamps[-1]}", flush=True)
    return stamps


def main(argv: list[str] | None = None) -> int:
    """``python -m mrisr.notebook run MODE [NOTEBOOK ...]`` (default: all, in order) or ``... stamp NOTEBOOK...``."""
    import argparse

    from mrisr.overrides import add_set_option
    from mrisr.quiet import quiet_dependencies

    quiet_dependencies()
    parser = argparse.ArgumentParser(prog="python -m mrisr.notebook", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks in place in a mode, and stamp them")
    run.add_argument("mode", choices=list(MODE_PARAMETERS))
    run.add_argument("notebooks", nargs="*", default=list(NOTEBOOKS), help="names without .ipynb (default: all)")
    add_set_option(run, "a notebook parameter (set size=smoke: another column's network and schedule)")
    run.add_argument("--root", help="the project folder whose notebooks/ run (default: this checkout); the notebooks "
                     "are executed in place there")
    stamp_cmd = sub.add_parser("stamp", help="write what an executed notebook ran on into its title cell")
    stamp_cmd.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "run":
        run_notebooks(args.mode, args.notebooks, args.root, **dict(args.set))
    else:
        for path in args.paths:
            print(f"{path}: {stamp(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
