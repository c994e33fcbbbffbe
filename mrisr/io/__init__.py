"""Load any supported MR scan into a `Volume`, and save volumes as NIfTI.

| input | reader | options |
|---|---|---|
| folder of DICOM files, or a DICOMDIR | `mrisr.io.dicom` | ``series``, ``skip_unreadable`` |
| ``.nii``, ``.nii.gz`` | `mrisr.io.nifti` | |
| ``.h5`` ISMRMRD raw (mridata.org) | `mrisr.io.ismrmrd_raw` | ``contrast``, ``repetition``, ``phase_encoding_axes``,
``chunk_size`` |
| ``.h5`` fastMRI | `mrisr.io.fastmri` | ``kspace`` |
| ``.mat``, ``.npy`` | `mrisr.io.arrays` | ``variable`` (.mat), ``axes``, ``spacing`` |

Every format also takes ``nan``: ``None`` (default) refuses images with NaN or infinite voxels; a number replaces them.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import h5py
import numpy as np

from mrisr.errors import InputError
from mrisr.io.arrays import read_array
from mrisr.io.dicom import read_dicom_series
from mrisr.io.fastmri import is_fastmri, read_fastmri
from mrisr.io.ismrmrd_raw import is_ismrmrd, read_ismrmrd
from mrisr.io.nifti import read_nifti, write_nifti
from mrisr.volume import Volume

__all__ = ["Volume", "load_volume", "save_volume"]


def _reader(path: Path):
    if path.is_dir() or path.name.upper() == "DICOMDIR":
        return read_dicom_series
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti
    if name.endswith((".mat", ".npy")):
        return read_array
    if name.endswith((".h5", ".hdf5", ".mrd")):
        try:
            with h5py.File(path, "r") as f:
                if is_ismrmrd(f):
                    return read_ismrmrd
                if is_fastmri(f):
                    return read_fastmri
                found = ", ".join(sorted(f.keys())) or "nothing"
        except OSError as err:
            raise InputError(path, f"cannot be opened as HDF5, truncated or corrupt ({err})") from None
        raise InputError(path, f"HDF5 file is neither ISMRMRD raw data (/dataset/xml, /dataset/data) nor fastMRI "
                               f"(kspace, reconstruction_rss); it holds: {found}")
    if name.endswith(".dcm"):
        raise InputError(path, "give the folder that holds the DICOM series, not one file")
    raise InputError(path, "unknown format; mrisr reads DICOM folders, .nii/.nii.gz, ISMRMRD or fastMRI .h5, "
                           ".mat and .npy")


def load_volume(path: str | Path, nan: float | None = None, **options) -> Volume:
    """Load ``path`` (see the table above) into a `Volume` in mrisr's axis convention.

    Args:
        path: file, or folder for a DICOM series.
        nan: ``None`` to refuse non-finite voxels (the error names the file), or the value that replaces them.
        **options: format options from the table above; an option the format does not take is an error.

    Raises:
        InputError: one line, ``"<path>: <problem>"``, for anything wrong with the input.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(path, "no such file or folder")
    reader = _reader(path)
    accepted = list(inspect.signature(reader).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(path, f"option(s) {unknown} do not apply to this format; it takes {accepted or 'none'}")
    volume = reader(path, **options)
    bad = ~np.isfinite(volume.data)
    if bad.any():
        if nan is None:
            raise InputError(path, f"{int(bad.sum())} voxels are NaN or infinite; pass nan=<value> (mrisr info "
                                   "--nan) to replace them")
        volume.data[bad] = nan
        volume.meta["replaced_non_finite"] = int(bad.sum())
    volume.meta["source_path"] = str(path)
    volume.meta = {"source_format": volume.meta.pop("source_format"), **volume.meta}
    return volume


def save_volume(volume: Volume, path: str | Path, dtype: str = "float32") -> Path:
    """Write ``volume`` as NIfTI (see `mrisr.io.nifti.write_nifti`): exact in float32, compact in int16."""
    return write_nifti(volume, path, dtype=dtype)
