"""Copy a DICOM series as Deflated Explicit VR Little Endian (zlib, lossless, read by pydicom without extra
decoders), and check that the copy loads voxel for voxel and with the same geometry as the original.

    python tools/deflate_dicom.py SOURCE_FOLDER DEST_FOLDER

The source is never modified; an existing DEST_FOLDER is an error. tools/gpu_pack.sh uses it to carry the DESS knee
(43 MB raw, 34 MB deflated) within the device tool's 64 MiB."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian

from mrisr.io import load_volume


def deflate_series(source: Path, dest: Path) -> Path:
    if dest.exists():
        raise SystemExit(f"{dest}: exists already; remove it first")
    files = sorted(p for p in source.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory(dir=dest.parent) as scratch:  # nothing half-written under dest
        for path in files:
            dataset = pydicom.dcmread(path)
            dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
            dataset.save_as(Path(scratch) / path.name, enforce_file_format=True)
        original, copy = load_volume(source), load_volume(scratch)
        if not (np.array_equal(original.data, copy.data) and np.allclose(original.affine, copy.affine)):
            raise SystemExit(f"{source}: the deflated copy does not load as the original; nothing written")
        shutil.move(scratch, dest)
        Path(scratch).mkdir()  # for the context manager's clean-up
    return dest


if __name__ == "__main__":
    source, dest = map(Path, sys.argv[1:3])
    dest.parent.mkdir(parents=True, exist_ok=True)
    deflate_series(source, dest)
    print(f"{dest}: {sum(p.stat().st_size for p in dest.iterdir()) / 1e6:.1f} MB, "
          f"from {sum(p.stat().st_size for p in source.iterdir() if p.is_file()) / 1e6:.1f} MB")
