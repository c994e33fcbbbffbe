"""fastMRI HDF5 (Zbontar et al., 2018): ``reconstruction_rss`` or, when asked, the raw ``kspace``.

Layout: ``kspace`` is ``(slices, coils, rows, cols)`` (multi-coil) or ``(slices, rows, cols)`` (single-coil), rows
along the oversampled readout; ``reconstruction_rss`` is ``(slices, rows, cols)`` already cropped. mrisr axes are
the same ``(slice, row, column)``. Spacing comes from the ``ismrmrd_header`` FOVs (slice spacing: the encoded z
FOV, which fastMRI's 2D scans set to the slice thickness).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import ismrmrd.xsd
import numpy as np

from mrisr.errors import InputError
from mrisr.imaging.kspace import center_crop, ifftc, rss
from mrisr.volume import Volume


def is_fastmri(f: h5py.File) -> bool:
    return "kspace" in f or "reconstruction_rss" in f


def read_fastmri(path: Path, kspace: bool = False) -> Volume:
    with h5py.File(path, "r") as f:
        header = None
        if "ismrmrd_header" in f:
            try:
                header = ismrmrd.xsd.CreateFromDocument(bytes(f["ismrmrd_header"][()]).decode())
            except Exception:
                header = None
        if not kspace and "reconstruction_rss" in f:
            image = np.asarray(f["reconstruction_rss"][()], np.float32)
        elif "kspace" in f:
            raw = f["kspace"]
            if raw.ndim not in (3, 4):
                raise InputError(path, f"kspace has shape {raw.shape}; expected (slices, [coils,] rows, cols)")
            size = (header.encoding[0].reconSpace.matrixSize.x, header.encoding[0].reconSpace.matrixSize.y) \
                if header is not None else raw.shape[-2:]
            image = np.empty((raw.shape[0], *size), np.float32)
            for s in range(raw.shape[0]):  # one slice at a time
                coils = ifftc(np.asarray(raw[s]), axes=(-2, -1))
                coils = coils[None] if raw.ndim == 3 else coils
                image[s] = center_crop(center_crop(rss(coils, axis=0), 0, size[0]), 1, size[1])
        else:
            raise InputError(path, "fastMRI file has neither reconstruction_rss nor kspace")
    spacing = (1.0, 1.0, 1.0)
    meta = {"source_format": "fastmri", "phase_encoding_axes": (2,)}
    if header is not None:
        enc = header.encoding[0]
        r_fov, r_mat = enc.reconSpace.fieldOfView_mm, enc.reconSpace.matrixSize
        spacing = (enc.encodedSpace.fieldOfView_mm.z or 1.0, r_fov.x / r_mat.x, r_fov.y / r_mat.y)
        system = header.acquisitionSystemInformation
        if system is not None and system.systemFieldStrength_T:
            meta["field_strength_t"] = float(system.systemFieldStrength_T)
    else:
        meta["spacing_unknown"] = True
    return Volume.from_spacing(image, spacing, meta)
