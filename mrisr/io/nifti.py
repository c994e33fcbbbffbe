"""NIfTI-1/2 (.nii, .nii.gz) through nibabel.

NIfTI stores voxels as ``(i, j, k[, t])`` with ``i`` fastest; mrisr's ``(s, r, c)`` is that order reversed, so a
NIfTI from a scanner converter (``k`` = slice) lands with the slice axis first. Reading and writing only permute
axes and affine columns: no resampling, so a round trip is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from mrisr.errors import InputError
from mrisr.io.atomic import atomic_path
from mrisr.volume import Volume

_META_TAG = "mrisr-meta:"  # header extension (NIfTI comment) carrying the Volume's meta as JSON
_NOT_STORED = ("source_format", "source_path")


def _reverse_axes(affine: np.ndarray) -> np.ndarray:
    """Swap affine columns 0 and 2: the voxel-to-world map after reversing the array's three spatial axes."""
    out = np.array(affine, dtype=np.float64)
    out[:, :3] = out[:, [2, 1, 0]]
    return out


def read_nifti(path: Path) -> Volume:
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)  # applies scl_slope / scl_inter
    except Exception as err:  # nibabel raises many types for damaged files
        raise InputError(path, f"cannot be read as NIfTI ({type(err).__name__}: {err})") from None
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim < 3:
        raise InputError(path, f"holds a {data.ndim}-D image of shape {data.shape}; a volume needs 3 axes")
    if data.ndim > 4:
        raise InputError(path, f"holds a {data.ndim}-D image of shape {data.shape}; only 3D and 4D (time) load")
    data = np.ascontiguousarray(data.transpose(tuple(reversed(range(data.ndim)))))
    header = img.header
    meta = {"source_format": "nifti", "description": _text(header.get("descrip"))}
    _, phase_dim, _ = header.get_dim_info()
    if phase_dim is not None:
        meta["phase_encoding_axes"] = (2 - int(phase_dim),)
    if data.ndim == 4:
        zooms = header.get_zooms()
        if len(zooms) > 3 and zooms[3] > 0:
            unit = header.get_xyzt_units()[1]
            meta["frame_time_ms"] = float(zooms[3]) * {"sec": 1000.0, "msec": 1.0, "usec": 1e-3}.get(unit, 1.0)
    for ext in header.extensions:
        content = ext.get_content()
        content = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        if content.startswith(_META_TAG):  # written by mrisr: its stored meta replaces the header's description
            stored = json.loads(content[len(_META_TAG):])
            if "phase_encoding_axes" in stored:
                stored["phase_encoding_axes"] = tuple(stored["phase_encoding_axes"])
            meta.pop("description", None)
            meta.update(stored)
    return Volume(data, _reverse_axes(img.affine), {k: v for k, v in meta.items() if v not in (None, "")})


def _text(value) -> str | None:
    if value is None:
        return None
    value = np.asarray(value).item()
    return (value.decode("latin-1") if isinstance(value, bytes) else str(value)).strip("\x00 ").strip() or None


def write_nifti(volume: Volume, path: str | Path, dtype: str = "float32") -> Path:
    """Write ``volume`` to ``path`` (.nii or .nii.gz) with its affine as both qform and sform (scanner frame).

    ``dtype``: ``"float32"`` (exact) or ``"int16"`` (compact: nibabel stores a slope and intercept, about 1/30000 of
    the intensity range in precision). Written to a temporary name in the same folder, then renamed, so a reader
    never sees half a file.
    """
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise InputError(path, "a NIfTI file name must end in .nii or .nii.gz")
    if dtype not in ("float32", "int16"):
        raise ValueError(f"dtype must be 'float32' or 'int16', not {dtype!r}")
    data = volume.data.transpose(tuple(reversed(range(volume.data.ndim))))
    img = nib.Nifti1Image(data, _reverse_axes(volume.affine))
    img.set_qform(img.affine, code="scanner")
    img.set_sform(img.affine, code="scanner")
    img.header.set_xyzt_units(xyz="mm", t="msec")
    img.set_data_dtype(np.dtype(dtype))
    if "frame_time_ms" in volume.meta and volume.data.ndim == 4:
        zooms = list(img.header.get_zooms())
        zooms[3] = float(volume.meta["frame_time_ms"])
        img.header.set_zooms(zooms)
    phase_axes = [a for a in volume.meta.get("phase_encoding_axes") or () if a in (1, 2)]
    if len(phase_axes) == 1:
        img.header.set_dim_info(phase=2 - phase_axes[0])
    description = str(volume.meta.get("series_description") or volume.meta.get("description") or "")
    img.header["descrip"] = description.encode("ascii", "replace")[:79]
    stored = {k: v for k, v in volume.meta.items() if k not in _NOT_STORED}
    text = _META_TAG + json.dumps(stored, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", text.encode()))
    with atomic_path(path, suffix=".nii.gz" if path.name.endswith(".gz") else ".nii") as tmp:
        nib.save(img, str(tmp))
    return path
