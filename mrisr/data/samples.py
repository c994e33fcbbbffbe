"""The real sample scans (``$MRISR_SAMPLE_DATA``, else ``../shared/data`` beside the repository) as small stand-in
datasets, for smoke runs of the notebooks and for trying the pipeline before downloading anything.

* `knee_slabs`: the 3 T DESS knee cut into spatially disjoint slabs along its rows (superior-inferior), each written
  as a NIfTI "subject". One anatomy, so scores between slabs are not scores between patients.
* `fair_knee`: the second knee (FAIR toolbox, another subject and scanner) for testing on an unseen scan.
* `cardiac_cine`: the ACDC short-axis cine slice (30 phases) as a NIfTI time series.
* `cardiac_subjects`: the short-axis stacks of three subjects (ACDC, M&Ms, M&Ms-2; end-diastole and end-systole) as
  NIfTI time series, for a split by subject, with the ACDC cine slice.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrisr.data.cases import disjoint_slabs, sub_volume
from mrisr.errors import InputError
from mrisr.imaging.noise import NOISE_KEY, with_noise_sigma
from mrisr.io import load_volume, save_volume

REPO = Path(__file__).resolve().parents[2]


def sample_dir() -> Path:
    """Folder of the real samples: ``$MRISR_SAMPLE_DATA`` or ``<repository>/../shared/data``."""
    folder = Path(os.environ.get("MRISR_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    if not (folder / "knee_dess_sample").is_dir():
        raise InputError(folder, "sample data not found (set MRISR_SAMPLE_DATA to the folder holding "
                                 "knee_dess_sample/ and cardiac_acdc_cine_slice/)")
    return folder


# The one knee split of the samples (notebooks 01-03, experiments/real_knee.py, the README): slab numbers of
# `knee_slabs` (n = 4, top to bottom). Slab 3 holds the joint (cartilage, menisci, the anatomy super-resolution is for)
# and tests; slab 4, below it, validates (recipe choices, baseline settings); slabs 1-2, above, train.
KNEE_SPLIT = {"train": (1, 2), "valid": 4, "test": 3}


def knee_slabs(out_dir: str | Path, n: int = 4, columns: int | None = 192, margin_mm: float = 10.0,
               held_out: int | None = None) -> list[Path]:
    """The DESS knee (80 x 512 x 512 at 1.5 x 0.3125 x 0.3125 mm) cropped to its central ``columns`` (None: all 512)
    and cut into ``n`` slabs along the rows (top to bottom), ``margin_mm`` apart, written once as
    ``knee_slab_K.nii.gz`` in ``out_dir``. Returned top to bottom, but slab ``held_out`` (1-based) last, where
    `mrisr.data.cases.split_cases` takes the test subject: of four slabs the third holds the joint (cartilage, menisci).
    Each slab records the noise level measured on the whole knee (`mrisr.imaging.noise.with_noise_sigma`): a slab's own
    air is too little, and partly shadowed tissue, to read it from."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"knee_slab_{k + 1}.nii.gz" for k in range(n)]
    if held_out is not None and not 1 <= held_out <= n:
        raise ValueError(f"held_out must be a slab number from 1 to {n}, got {held_out!r}")
    if not all(p.exists() for p in paths) or NOISE_KEY not in load_volume(paths[0]).meta:  # (older slabs lack it)
        knee = with_noise_sigma(load_volume(sample_dir() / "knee_dess_sample"))  # measured on the whole scan
        start = (knee.shape[2] - (columns or knee.shape[2])) // 2
        knee = sub_volume(knee, 2, start, start + (columns or knee.shape[2]))
        for path, slab in zip(paths, disjoint_slabs(knee, n, axis=1, margin_mm=margin_mm, multiple=8)):
            save_volume(slab, path)
    return paths if held_out is None else [p for k, p in enumerate(paths) if k + 1 != held_out] + [paths[held_out - 1]]


# The FAIR knee's 8-bit export clipped its air (a fifth of it is 0, the rest does not fit any noise distribution), so
# `mrisr.imaging.noise.noise_sigma` cannot read its noise: the noisy presets add noise to it at the SNR measured on the
# DESS.
FAIR_SNR = 30.0


def fair_knee():
    """The FAIR-toolbox knee (``knee_fair/knee3D.mat``, variable ``dataT``): 128 x 64 x 128 voxels of about 1 mm, a
    `Volume` whose phase-encoding axes are (0, 2) (the file does not record them)."""
    volume = load_volume(sample_dir() / "knee_fair" / "knee3D.mat", variable="dataT")
    volume.meta["phase_encoding_axes"] = (0, 2)
    return volume


def cardiac_cine(out_dir: str | Path) -> Path:
    """The ACDC cine slice as ``out_dir/acdc_slice.nii.gz``: ``(30 phases, 1 slice, 184, 256)``; the file stores no
    spacing, so voxels are 1 mm (the cardiac experiment's degradation works in pixels)."""
    path = Path(out_dir) / "acdc_slice.nii.gz"
    if not path.exists():
        save_volume(load_volume(sample_dir() / "cardiac_acdc_cine_slice" / "demo_data.mat", axes="RCT"), path)
    return path


CARDIAC_SUBJECTS = ("acdc", "mnms", "mnms2")  # cardiac_sax_frames/<name>_sax_{ed,es}.nii.gz


def cardiac_subjects(out_dir: str | Path) -> list[Path]:
    """The cardiac samples as cases for a split by subject, written once in ``out_dir``: the ACDC cine slice
    (`cardiac_cine`), then ``<name>_sax.nii.gz`` for ACDC, M&Ms and M&Ms-2: each subject's short-axis stack at
    end-diastole and end-systole as two frames ``(2, slices, 192, 192)`` at 1 x 1 mm in-plane, 10 mm slices.
    In this order `mrisr.data.cases.split_cases` (one to test, one to validate) trains on the two ACDC scans, validates
    on M&Ms and tests on M&Ms-2: three challenges, three scanners, and no subject on both sides of the split
    (whether the cine slice and the ACDC stack are one patient does not matter: both train)."""
    out_dir = Path(out_dir)
    paths = [cardiac_cine(out_dir)]
    for name in CARDIAC_SUBJECTS:
        path = out_dir / f"{name}_sax.nii.gz"
        if not path.exists():
            ed, es = (load_volume(sample_dir() / "cardiac_sax_frames" / f"{name}_sax_{phase}.nii.gz")
                      for phase in ("ed", "es"))
            if ed.shape != es.shape:
                raise InputError(sample_dir() / "cardiac_sax_frames", f"{name}: end-diastole {ed.shape} and "
                                                                       f"end-systole {es.shape} differ in shape")
            save_volume(ed.with_data(np.stack([ed.data, es.data])), path)
        paths.append(path)
    return paths
