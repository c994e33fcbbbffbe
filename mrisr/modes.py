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

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mrisr.data.samples import KNEE_SPLIT, cardiac_subjects, knee_slabs
from mrisr.errors import InputError
from mrisr.io.cine import find_cine_cases
from mrisr.training.device import default_device

MODES = ("smoke", "samples", "full")

# The knee network of 02 (EDSR3D, MSE and MSE + perceptual). "samples" is the seed's network (64 x 9) on the DESS
# slabs; "samples-cpu" a 16 x 2 network of the size benchmarks/real_knee.py uses on 2 cores. ``lr_max``: the peak
# learning rate (2e-4 is the recipe's for the seed-size network, docs/training.md; small networks want 1e-3), or
# "find" for lr_find's valley (`mrisr.training.train.fit`).
# ``slabs``: `mrisr.data.samples.knee_slabs` options (None: the downloaded knees); ``n_test``, ``n_valid``: the split
# (None: `mrisr.data.cases.split_cases`' default, a quarter of the knees test and one validates: 5 and 1 of the 20);
# ``quick_baselines``: one setting per classical baseline instead of fitting them (`fit_baselines`' quick; smoke).
KNEE3D = {
    "full": dict(n_feats=64, n_blocks=9, patch_size=32, batch_size=16, patches_per_subject=256,
                 valid_patches_per_subject=32, epochs=30, lr_max=2e-4, slabs=None,
                 n_test=None, n_valid=None, quick_baselines=False),
    "samples": dict(n_feats=64, n_blocks=9, patch_size=32, batch_size=32, patches_per_subject=1024,
                    valid_patches_per_subject=128, epochs=16, lr_max=2e-4,
                    slabs=dict(columns=None, held_out=KNEE_SPLIT["test"]), n_test=1, n_valid=1,
                    quick_baselines=False),
    "samples-cpu": dict(n_feats=16, n_blocks=2, patch_size=24, batch_size=8, patches_per_subject=160,
                        valid_patches_per_subject=32, epochs=6, lr_max=1e-3,
                        slabs=dict(columns=None, held_out=KNEE_SPLIT["test"]), n_test=1, n_valid=1,
                        quick_baselines=False),
    "smoke": dict(n_feats=8, n_blocks=1, patch_size=16, batch_size=4, patches_per_subject=8,
                  valid_patches_per_subject=4, epochs=1, lr_max=2e-4,
                  slabs=dict(columns=192, held_out=KNEE_SPLIT["test"]), n_test=1, n_valid=1, quick_baselines=True),
}

# The four cardiac networks of 04 (SRResNet2D, x4: 4 residual + 2 upscaling blocks), each trained with ``seeds``
# seeds (the gains' intervals cover the spread between them).
CARDIAC2D = {
    "full": dict(n_feats=64, patch_size=96, batch_size=16, patches_per_epoch=2048, valid_patches_per_subject=64,
                 epochs=40, lr_max=1e-3, seeds=3, quick_baselines=False),
    "samples": dict(n_feats=64, patch_size=96, batch_size=16, patches_per_epoch=2048, valid_patches_per_subject=64,
                    epochs=20, lr_max=1e-3, seeds=3, quick_baselines=False),
    "samples-cpu": dict(n_feats=32, patch_size=64, batch_size=8, patches_per_epoch=192, valid_patches_per_subject=32,
                        epochs=4, lr_max=1e-3, seeds=3, quick_baselines=False),
    "smoke": dict(n_feats=8, patch_size=32, batch_size=4, patches_per_epoch=16, valid_patches_per_subject=4,
                  epochs=1, lr_max=1e-3, seeds=1, quick_baselines=True),
}

# Self-supervised super-resolution of the DESS in 05: a `mrisr.inference.selfsr` preset, the block of the knee it runs
# on ((start, size) per axis; None: the whole knee) and ``quick_baselines`` (as above; the classical baselines are
# fitted on the FAIR knee, `mrisr.evaluation.thick_slices`).
SELFSR = {
    "full": dict(preset="full", block=None, quick_baselines=False),
    "samples": dict(preset="full", block=None, quick_baselines=False),
    "samples-cpu": dict(preset="fast", block=[(8, 64), (96, 320), (96, 320)], quick_baselines=False),
    "smoke": dict(preset=dict(n_feats=8, n_blocks=1, epochs=1, patches_per_subject=32, valid_patches_per_subject=8,
                              batch_size=8), block=[(20, 36), (200, 96), (200, 96)], quick_baselines=True),
}

# The quickstart (00): `mrisr.demo.run_demo`'s mode (None: by device), and whether it runs on the DESS knee.
QUICKSTART = {
    "full": dict(demo_mode=None, dess=False),
    "samples": dict(demo_mode=None, dess=True),
    "samples-cpu": dict(demo_mode="cpu", dess=True),
    "smoke": dict(demo_mode="fast", dess=False),
}

EXPERIMENTS = {"knee3d": KNEE3D, "cardiac2d": CARDIAC2D, "selfsr": SELFSR, "quickstart": QUICKSTART}

DATA_SETTINGS = {"knee3d": ("slabs", "n_test", "n_valid"), "cardiac2d": (), "selfsr": ("block",),
                 "quickstart": ("dess",)}
"""The settings of each experiment that choose its data and split; the rest (network, schedule, baselines' grid) are
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
    reduced: bool = False  # samples on a CPU: smaller network and schedule than the seed's
    size: str | None = None  # another column's network and schedule on this mode's data (a rehearsal)
    started: float = field(default_factory=time.time)

    def __str__(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        size = ", at a REDUCED size (a CPU: smaller network, shorter training than the seed's)" if self.reduced else ""
        if self.size is not None:
            size = f", at the {self.size} size (its network and schedule on this mode's data: a rehearsal)"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started))
        return f"This run: mode {self.mode}{size}; device {name}; data: {self.data}; started {when}"

    def split_text(self, train: list[str], valid: list[str], test: list[str]) -> str:
        """The sentence (Markdown) that says how this run split its data, from the case names it used: the prose of
        a notebook states the design, and this line the counts and names, so that no sentence disagrees with the
        outputs under it."""
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
    and data at that network and schedule, e.g. full mode rehearsed at the smoke size. ``overrides`` that are not
    None replace settings (a notebook's explicit parameters)."""
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
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"{name} has no setting {', '.join(sorted(unknown))}; settings: {', '.join(settings)}")
    settings.update({key: value for key, value in overrides.items() if value is not None})
    return Run(name, mode, device, settings, data or DATA[name].get(key, DATA[name][mode]), reduced, size)


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
