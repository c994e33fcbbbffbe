"""The real sample scans (``$MRISR_SAMPLE_DATA``, else ``../shared/data`` beside the repository) as small stand-in
datasets, for smoke runs of the notebooks and for trying the pipeline before downloading anything.

* `knee_slabs`: the 3 T DESS knee cut into spatially disjoint slabs along its rows (superior-inferior), each written
  as a NIfTI "subject". One anatomy, so scores between slabs are not scores between patients.
* `fair_knee`: the second knee (FAIR toolbox, another subject and scanner) for testing on an unseen scan.
* `cardiac_cine`: the ACDC short-axis cine slice (30 phases) as a NIfTI time series.
"""

from __future__ import annotations

import os
from pathlib import Path

from mrisr.cases import disjoint_slabs, sub_volume
from mrisr.errors import InputError
from mrisr.io import load_volume, save_volume

REPO = Path(__file__).resolve().parents[1]


def sample_dir() -> Path:
    """Folder of the real samples: ``$MRISR_SAMPLE_DATA`` or ``<repository>/../shared/data``."""
    folder = Path(os.environ.get("MRISR_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    if not (folder / "knee_dess_sample").is_dir():
        raise InputError(folder, "sample data not found (set MRISR_SAMPLE_DATA to the folder holding "
                                 "knee_dess_sample/ and cardiac_acdc_cine_slice/)")
    return folder


def knee_slabs(out_dir: str | Path, n: int = 4, columns: int = 192, margin_mm: float = 10.0) -> list[Path]:
    """The DESS knee (80 x 512 x 512 at 1.5 x 0.3125 x 0.3125 mm) cropped to its central ``columns`` and cut into
    ``n`` slabs along the rows, ``margin_mm`` apart, written once as ``knee_slab_K.nii.gz`` in ``out_dir``."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"knee_slab_{k + 1}.nii.gz" for k in range(n)]
    if all(p.exists() for p in paths):
        return paths
    knee = load_volume(sample_dir() / "knee_dess_sample")
    start = (knee.shape[2] - columns) // 2
    knee = sub_volume(knee, 2, start, start + columns)
    for path, slab in zip(paths, disjoint_slabs(knee, n, axis=1, margin_mm=margin_mm, multiple=8)):
        save_volume(slab, path)
    return paths


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
