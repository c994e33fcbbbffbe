"""How large each notebook's experiment is in each mode, and the line that says what a run ran on.

Three modes, one parameter (``mode``) in every notebook:

* ``"smoke"``: a tiny network for one epoch on the real samples (``../shared/data``): every cell runs, in a minute or
  two on a CPU. What the tests run; the numbers mean nothing.
* ``"samples"``: the real samples at the seed's network size (EDSR3D of 64 features and 9 blocks for the knee; 64
  features, 4 residual and 2 upscaling blocks for the heart), trained long enough to mean something: the knee on the
  DESS slabs (tested on the slab through the joint) and on the FAIR knee, the heart split by subject over the ACDC,
  M&Ms and M&Ms-2 short-axis frames (with the ACDC cine slice in training). Meant for one GPU (`make
  notebooks-samples`: the whole set within 20 minutes of an H100). On a CPU the same data runs at a reduced
  network size and schedule (``samples-cpu``), and `Run` says so.
* ``"full"``: the downloaded datasets (the 20 mridata knees, ACDC) on a GPU workstation.

``EXPERIMENTS[name][mode]`` holds each notebook's settings; `experiment` picks them for a mode and a device.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mrisr.data.cases import Split
from mrisr.data.samples import KNEE_SPLIT, cardiac_subjects, knee_slabs
from mrisr.errors import InputError
from mrisr.io.cine import find_cine_cases
from mrisr.training.config import ExperimentConfig
from mrisr.training.device import default_device
from mrisr.training.recipes import RECIPES

MODES = ("smoke", "samples", "full")

# Per experiment and mode, what the mode runs: ``recipe``, the size in `mrisr.training.recipes.RECIPES` (the network
# and schedule); the data and split; ``quick_baselines``: one setting per classical baseline instead of fitting them
# (`fit_baselines`' quick; smoke). "samples-cpu" is what samples mode runs on a CPU; "gpu" the samples set within
# 8 minutes of one H200 (``--set size=gpu``; `tools/gpu_run.sh`).
# knee3d (02, 03): ``slabs``, `mrisr.data.samples.knee_slabs` options (None: the downloaded knees); ``n_test``,
# ``n_valid``: the split (None: `mrisr.data.cases.split_cases`' default, a quarter of the knees test and one
# validates: 5 and 1 of the 20); ``feature_step``: 03's VGG feature distance over every n-th slice (smoke: 8).
_SLABS = dict(columns=None, held_out=KNEE_SPLIT["test"])
KNEE3D = {
    "full": dict(recipe="full", slabs=None, n_test=None, n_valid=None, quick_baselines=False, feature_step=1),
    "samples": dict(recipe="samples", slabs=_SLABS, n_test=1, n_valid=1, quick_baselines=False, feature_step=1),
    "gpu": dict(recipe="gpu", slabs=_SLABS, n_test=1, n_valid=1, quick_baselines=False, feature_step=1),
    "samples-cpu": dict(recipe="samples-cpu", slabs=_SLABS, n_test=1, n_valid=1, quick_baselines=False,
                        feature_step=1),
    "smoke": dict(recipe="smoke", slabs=dict(columns=192, held_out=KNEE_SPLIT["test"]), n_test=1, n_valid=1,
                  quick_baselines=True, feature_step=8),
}

# cardiac2d (04): each of the four networks trained with ``seeds`` seeds (the gains' intervals cover the spread).
CARDIAC2D = {
    "full": dict(recipe="full", seeds=3, quick_baselines=False),
    "samples": dict(recipe="samples", seeds=3, quick_baselines=False),
    "gpu": dict(recipe="gpu", seeds=3, quick_baselines=False),
    "samples-cpu": dict(recipe="samples-cpu", seeds=3, quick_baselines=False),
    "smoke": dict(recipe="smoke", seeds=1, quick_baselines=True),
}

# selfsr (05): ``block``, the block of the DESS it runs on ((start, size) per axis; None: the whole knee); the
# classical baselines are fitted on the FAIR knee (`mrisr.evaluation.thick_slices`).
SELFSR = {
    "full": dict(recipe="full", block=None, quick_baselines=False),
    "samples": dict(recipe="full", block=None, quick_baselines=False),
    "gpu": dict(recipe="gpu", block=None, quick_baselines=False),
    "samples-cpu": dict(recipe="fast", block=[(8, 64), (96, 320), (96, 320)], quick_baselines=False),
    "smoke": dict(recipe="smoke", block=[(20, 36), (200, 96), (200, 96)], quick_baselines=True),
}

# quickstart (00): `mrisr.demo.run_demo`'s recipe (None: by device), and whether it runs on the DESS knee.
QUICKSTART = {
    "full": dict(recipe=None, dess=False),
    "samples": dict(recipe=None, dess=True),
    "gpu": dict(recipe="cuda", dess=True),
    "samples-cpu": dict(recipe="cpu", dess=True),
    "smoke": dict(recipe="fast", dess=False),
}

EXPERIMENTS = {"knee3d": KNEE3D, "cardiac2d": CARDIAC2D, "selfsr": SELFSR, "quickstart": QUICKSTART}
RECIPE_NAMES = {"knee3d": "knee3d", "cardiac2d": "cardiac2d", "selfsr": "selfsr", "quickstart": "demo"}
"""Each experiment's table in `RECIPES`."""

DATA_SETTINGS = {"knee3d": ("slabs", "n_test", "n_valid"), "cardiac2d": (), "selfsr": ("block",),
                 "quickstart": ("dess",)}
"""The settings of each experiment that choose its data and split; the rest (recipe, seeds, baselines' grid) are
its size, which ``experiment(size=...)`` takes from another column."""

_DESS_SLABS = ("the real DESS knee (../shared/data), 4 slabs of 80 x 104 x 512 voxels along the rows, 10 mm apart: "
               "train on slabs 1-2, validate on 4, test on 3 (through the joint); the FAIR knee (another subject and "
               "scanner) as a second test")
_CARDIAC = ("real short-axis cine (../shared/data): train on ACDC (a subject's stack and the cine slice), validate on "
            "an M&Ms subject, test on an M&Ms-2 subject")


def _dess_block(block) -> str:
    return f"a {' x '.join(str(size) for _, size in block)} block of the real DESS knee (../shared/data)"


DATA = {  # what each experiment runs on, per settings key (samples-cpu where it differs from samples)
    "quickstart": {"smoke": "built-in phantom knees (tiny)", "samples": "the real DESS knee (../shared/data), one "
                   "scan: its last quarter along the rows is the test part", "full": "seven built-in phantom knees"},
    "knee3d": {"smoke": "the real DESS knee cut into 4 slabs of 192 columns (tiny network)", "samples": _DESS_SLABS,
               "full": "the mridata knees in knee_dir (a split by patient)"},
    "cardiac2d": {"smoke": _CARDIAC + " (tiny network)", "samples": _CARDIAC,
                  "full": "the ACDC cine scans in cine_dir (a split by patient)"},
    "selfsr": {"smoke": _dess_block(SELFSR["smoke"]["block"]), "samples": "the real DESS knee (../shared/data)",
               "samples-cpu": _dess_block(SELFSR["samples-cpu"]["block"]), "full": "the DESS knee (or your scan)"},
}


@dataclass
class Run:
    """What one notebook run is: its mode, device, settings, data and start time. ``str(run)`` is the line the
    notebook prints first (and `mrisr.notebook.stamp` copies, with the duration, to its title cell)."""
    experiment: str
    mode: str
    device: torch.device
    settings: dict
    data: str
    recipe: ExperimentConfig | None = None  # the network and schedule (`RECIPES`); None: the demo's, by device
    reduced: bool = False  # samples on a CPU: smaller network and schedule than the seed's
    size: str | None = None  # another column's network and schedule on this mode's data (a rehearsal)
    recipe_size: str | None = None  # the recipe's size in `RECIPES` (None: the demo's, by device)
    started: float = field(default_factory=time.time)

    def __str__(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        size = ", at a REDUCED size (a CPU: smaller network, shorter training than the seed's)" if self.reduced else ""
        if self.size is not None:
            size = f", at the {self.size} size (its network and schedule on this mode's data)"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started))
        return f"This run: mode {self.mode}{size}; device {name}; data: {self.data}; started {when}"

    def split_text(self, split: Split) -> str:
        """The sentence (Markdown) that says how this run split its data, from the `Split` it used: the prose of a
        notebook states the design, and this line the counts and names, so that no sentence disagrees with the
        outputs under it."""
        train, valid, test = split.names

        def named(names):
            return f"{len(names)} ({', '.join(f'`{n}`' for n in names)})" if names else "none"
        return (f"**This run's split** (mode {self.mode}, by subject or by a disjoint slab): trains on {named(train)}, "
                f"validates on {named(valid)} and tests on {named(test)}, which training never sees.")

    def elapsed(self) -> str:
        return f"{(time.time() - self.started) / 60:.1f} min"


def experiment(name: str, mode: str, device=None, data: str = "", size: str | None = None, **overrides) -> Run:
    """The `Run` of experiment ``name`` (a key of `EXPERIMENTS`) in ``mode`` on ``device`` (None: the GPU when
    there is one): ``samples`` on a CPU takes the ``samples-cpu`` settings. ``size``: another column of the table
    (``"smoke"``, ``"samples-cpu"``, ...) for every setting but the data's (`DATA_SETTINGS`): the mode's code path
    and data at that recipe, e.g. full mode rehearsed at the smoke size. ``overrides`` that are not None replace
    settings or, where they name an `ExperimentConfig` field, the recipe's (a notebook's explicit parameters;
    ``lr_max="find"``: `lr_find`'s valley)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {name!r}")
    device = default_device(device)
    reduced = mode == "samples" and device.type != "cuda"
    key = "samples-cpu" if reduced else mode
    settings = dict(EXPERIMENTS[name][key])
    if size is not None:
        if size not in EXPERIMENTS[name]:
            raise ValueError(f"size must be one of {', '.join(EXPERIMENTS[name])}, got {size!r}")
        reduced = False
        settings |= {k: v for k, v in EXPERIMENTS[name][size].items() if k not in DATA_SETTINGS[name]}
    overrides = {k: None if (k, v) == ("lr_max", "find") else v for k, v in overrides.items()
                 if v is not None}
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = set(overrides) - set(settings) - fields
    if unknown:
        raise ValueError(f"{name} has no setting {', '.join(sorted(unknown))}; settings: {', '.join(settings)} and "
                         "the ExperimentConfig fields")
    chosen = settings.pop("recipe")
    on_recipe = {k: v for k, v in overrides.items() if k not in settings}
    if chosen is None and on_recipe:
        raise ValueError(f"{name} in {mode} mode picks its recipe by device: set size to change "
                         f"{', '.join(sorted(on_recipe))}")
    settings.update({k: v for k, v in overrides.items() if k in settings})
    recipe = None if chosen is None else RECIPES[RECIPE_NAMES[name]][chosen].updated(on_recipe)
    return Run(name, mode, device, settings, data or DATA[name].get(key, DATA[name][mode]), recipe, reduced, size,
               chosen)


def knee_cases(run: Run, knee_dir: str | Path, work_dir: str | Path) -> list[Path]:
    """The knee volumes of ``run``: the downloaded knees in ``knee_dir`` (full mode), else the DESS slabs written
    in ``work_dir`` (`mrisr.data.samples.knee_slabs` with the mode's options), the test slab last."""
    slabs = run.settings["slabs"]
    if slabs is None:
        paths = sorted(Path(knee_dir).glob("knee_*.nii.gz"))
        if not paths:
            raise InputError(knee_dir, "no knee_*.nii.gz here: run `mrisr download knees` (or notebook 01 with "
                                       "download=True), or set mode to 'samples'")
        return paths
    return knee_slabs(Path(work_dir) / f"dess_{slabs['columns'] or 'all'}_columns", **slabs)


def cardiac_cases(run: Run, cine_dir: str | Path | None, work_dir: str | Path) -> list[Path]:
    """The cardiac scans of ``run``: the cine scans in ``cine_dir`` (full mode; `mrisr.io.cine.find_cine_cases`),
    else the samples' three subjects and cine slice (`mrisr.data.samples.cardiac_subjects`), the test subject last."""
    if run.mode == "full":
        if cine_dir is None:
            raise ValueError("full mode needs cine_dir (ACDC, or a folder of cine scans); or set mode to 'samples'")
        return list(find_cine_cases(cine_dir).values())
    return cardiac_subjects(work_dir)
