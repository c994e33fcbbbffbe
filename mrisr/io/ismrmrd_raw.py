"""ISMRMRD raw k-space (HDF5, ``/dataset/xml`` + ``/dataset/data``): Cartesian reconstruction. (A simulator that
writes such files for the tests is `mrisr.testing.write_ismrmrd`.)

Reconstruction, following the ISMRMRD header (Inati et al., MRM 2017):

1. Stream the acquisitions in chunks (never the whole file at once), skipping noise, navigator, phase-correction
   and other non-imaging lines, keeping one ``contrast`` and ``repetition``; repeated lines (``average``) are
   averaged.
2. Readout: each line is placed in an ``encodedSpace.x``-long line at its ``center_sample``, inverse FFT'd at once,
   and cropped to the reconstruction field of view, which removes readout oversampling as the header's FOVs say
   (``encodedSpace`` FOV x = 2 x ``reconSpace`` FOV x for 2x oversampling). So the buffer holds hybrid
   ``(x, ky, kz)`` data at the final readout size.
3. Phase encoding: lines sit at ``kspace_encode_step_1/2`` shifted so the header's k-space ``center`` is the
   centre; centred inverse FFT; crop (or k-space zero-pad) to ``reconSpace``.
4. Coils: root-sum-of-squares; where the file has a ``rec_std`` array (the Stanford GE knees of mridata.org), each
   coil is first weighted by its inverse noise variance, as those files' own reconstruction does.

Memory: one complex64 buffer of ``slices x kz x ky x coils x x_recon``, the size of the final k-space, plus a chunk.

Layouts: a 3D acquisition encodes partitions with ``kspace_encode_step_2``; 2D multi-slice data uses ``slice``
(image space). The mridata.org knees store their 256 partitions already Fourier-transformed in the ``slice``
counter, so they reconstruct through the multi-slice path; pass ``phase_encoding_axes=(0, 1)`` for them (the
catalogue does), since their header cannot say the slices were phase encoded.

Output axes (mrisr convention): ``(slice or partition z, phase encode y, readout x)``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from mrisr.errors import InputError
from mrisr.imaging.kspace import center_crop, ifftc
from mrisr.volume import LPS_TO_RAS, Volume

_SKIP = sum(1 << (flag - 1) for flag in (
    ismrmrd.ACQ_IS_NOISE_MEASUREMENT, ismrmrd.ACQ_IS_NAVIGATION_DATA, ismrmrd.ACQ_IS_PHASECORR_DATA,
    ismrmrd.ACQ_IS_DUMMYSCAN_DATA, ismrmrd.ACQ_IS_RTFEEDBACK_DATA, ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
    ismrmrd.ACQ_IS_PHASE_STABILIZATION, ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE,
    ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA))
_REVERSE = 1 << (ismrmrd.ACQ_IS_REVERSE - 1)


def is_ismrmrd(f: h5py.File) -> bool:
    return isinstance(f.get("dataset"), h5py.Group) and "xml" in f["dataset"] and "data" in f["dataset"]


def read_header(path: Path, f: h5py.File):
    try:
        xml = f["dataset"]["xml"][0]
        return ismrmrd.xsd.CreateFromDocument(xml.decode() if isinstance(xml, bytes) else xml)
    except Exception as err:
        raise InputError(path, f"ISMRMRD XML header cannot be parsed ({type(err).__name__}: {err})") from None


def _grid(encoded: int, recon: int, fov_encoded: float, fov_recon: float) -> int:
    """Length of the k-space line whose inverse FFT has the recon grid's spacing (then crop to ``recon``)."""
    if fov_encoded > 0 and fov_recon > 0:
        return max(recon, round(recon * fov_encoded / fov_recon))
    return max(recon, encoded)


def read_ismrmrd(path: Path, contrast: int = 0, repetition: int = 0, chunk_size: int = 2048,
                 phase_encoding_axes: tuple[int, ...] | None = None) -> Volume:
    """Reconstruct a Cartesian ISMRMRD file to a magnitude `Volume` (see the module docstring for the steps)."""
    with h5py.File(path, "r") as f:
        if not is_ismrmrd(f):
            raise InputError(path, "HDF5 file is not ISMRMRD raw data (no /dataset/xml and /dataset/data)")
        header = read_header(path, f)
        enc = header.encoding[0]
        if str(getattr(enc.trajectory, "value", enc.trajectory)).lower() != "cartesian":
            raise InputError(path, f"trajectory is {enc.trajectory}; only Cartesian data can be reconstructed")
        e_mat, r_mat = enc.encodedSpace.matrixSize, enc.reconSpace.matrixSize
        e_fov, r_fov = enc.encodedSpace.fieldOfView_mm, enc.reconSpace.fieldOfView_mm
        nx, ny = _grid(e_mat.x, r_mat.x, e_fov.x, r_fov.x), _grid(e_mat.y, r_mat.y, e_fov.y, r_fov.y)
        nz = _grid(e_mat.z, r_mat.z, e_fov.z, r_fov.z) if e_mat.z > 1 else 1
        limits = enc.encodingLimits

        def centre(limit, default):
            return default if limit is None or limit.center is None else int(limit.center)

        ky_shift = ny // 2 - centre(limits.kspace_encoding_step_1, e_mat.y // 2)
        kz_shift = nz // 2 - centre(limits.kspace_encoding_step_2, e_mat.z // 2)
        n_slices = (limits.slice.maximum + 1) if limits.slice is not None else 1
        if n_slices > 1 and nz > 1:
            raise InputError(path, f"multi-slab 3D ({n_slices} slabs of {nz} partitions) is not supported")
        rec_x = r_mat.x

        acquisitions = f["dataset"]["data"]
        if acquisitions.dtype.names != acquisition_dtype.names or \
                acquisitions.dtype["head"] != acquisition_dtype["head"]:
            raise InputError(path, "/dataset/data does not have the ISMRMRD acquisition layout")
        buffer = counts = None
        positions: dict[int, np.ndarray] = {}
        directions = None
        for start in range(0, acquisitions.shape[0], chunk_size):
            try:
                block = acquisitions[start:start + chunk_size]
            except Exception as err:
                raise InputError(path, f"acquisitions {start}-{start + chunk_size} cannot be read (truncated or "
                                       f"corrupt file: {type(err).__name__})") from None
            head = block["head"]
            idx = head["idx"]
            keep = ((head["flags"] & _SKIP) == 0) & (idx["contrast"] == contrast) & (idx["repetition"] == repetition)
            for i in np.flatnonzero(keep):
                h = head[i]
                n_coils, n_samples = int(h["active_channels"]), int(h["number_of_samples"])
                line = block["data"][i].view(np.complex64).reshape(n_coils, n_samples)
                if h["flags"] & _REVERSE:
                    line = line[:, ::-1]
                if buffer is None:
                    buffer = np.zeros((n_slices, nz, ny, n_coils, rec_x), np.complex64)
                    counts = np.zeros((n_slices, nz, ny), np.uint16)
                    directions = np.array([h["read_dir"], h["phase_dir"], h["slice_dir"]], np.float64)
                s, y, z = int(idx["slice"][i]), int(idx["kspace_encode_step_1"][i]) + ky_shift, int(
                    idx["kspace_encode_step_2"][i]) + kz_shift
                if not 0 <= s < n_slices:
                    raise InputError(path, f"acquisition {start + i} has slice {s}; the header allows {n_slices}")
                if not (0 <= y < ny and 0 <= z < nz):
                    continue  # beyond the recon grid's k-space extent (cropped away)
                if n_coils != buffer.shape[3]:
                    raise InputError(path, f"acquisition {start + i} has {n_coils} coils, earlier ones "
                                           f"{buffer.shape[3]}")
                full = np.zeros((n_coils, nx), np.complex64)
                offset = nx // 2 - int(h["center_sample"])
                lo, hi = max(0, offset), min(nx, offset + n_samples)
                full[:, lo:hi] = line[:, lo - offset:hi - offset]
                buffer[s, z, y] += center_crop(ifftc(full, axes=(-1,)), -1, rec_x)
                counts[s, z, y] += 1
                positions.setdefault(s, np.array(h["position"], np.float64))
        if buffer is None:
            raise InputError(path, f"no imaging acquisitions for contrast {contrast}, repetition {repetition}")
        rec_std = np.asarray(f["dataset"]["rec_std"][0], np.float64).ravel() if "rec_std" in f["dataset"] else None

    buffer /= np.maximum(counts, 1)[..., None, None]
    if rec_std is not None and rec_std.size == buffer.shape[3] and np.all(rec_std > 0):
        weight = np.sqrt((1 / rec_std**2) / np.sum(1 / rec_std**2))
        buffer *= weight.astype(np.float32)[None, None, None, :, None]
    rec_y, rec_z = r_mat.y, (r_mat.z if nz > 1 else 1)
    image = np.zeros((n_slices, rec_z, rec_y, rec_x), np.float32)
    for s in range(n_slices):  # one slice (or the slab) and one coil at a time: little memory beyond the buffer
        for c in range(buffer.shape[3]):
            coil = ifftc(buffer[s, :, :, c], axes=(0, 1) if nz > 1 else (1,))
            image[s] += np.abs(center_crop(center_crop(coil, 0, rec_z), 1, rec_y)) ** 2
    image = np.sqrt(image, out=image).reshape(n_slices * rec_z, rec_y, rec_x)  # root-sum-of-squares

    return Volume(image, _affine(enc, directions, positions, n_slices, nz > 1), {
        "source_format": "ismrmrd",
        "series_description": getattr(header.measurementInformation, "protocolName", None)
        if header.measurementInformation is not None else None,
        "field_strength_t": getattr(header.acquisitionSystemInformation, "systemFieldStrength_T", None)
        if header.acquisitionSystemInformation is not None else None,
        "phase_encoding_axes": tuple(phase_encoding_axes) if phase_encoding_axes else ((0, 1) if nz > 1 else (1,)),
    })


def _affine(enc, directions, positions: dict[int, np.ndarray], n_slices: int, is_3d: bool) -> np.ndarray:
    """Voxel (slice/z, y, x) -> RAS mm, from the acquisitions' directions and the FOV centre positions."""
    r_mat, r_fov, e_fov = enc.reconSpace.matrixSize, enc.reconSpace.fieldOfView_mm, enc.encodedSpace.fieldOfView_mm
    dx = r_fov.x / r_mat.x if r_fov.x > 0 else 1.0
    dy = r_fov.y / r_mat.y if r_fov.y > 0 else 1.0
    read, phase, slice_dir = directions
    if abs(np.linalg.det(np.array([read, phase, slice_dir]))) < 0.5:  # unset directions: orientation unknown
        slice_dir, phase, read = np.eye(3)
    steps = np.zeros((3, 3))
    steps[:, 2], steps[:, 1] = read * dx, phase * dy
    first = positions[min(positions)]
    if is_3d:
        steps[:, 0] = slice_dir * (r_fov.z / r_mat.z if r_fov.z > 0 else 1.0)
        centre_index = np.array([r_mat.z // 2, r_mat.y // 2, r_mat.x // 2])
    else:
        last = positions[max(positions)]
        if n_slices > 1 and np.linalg.norm(last - first) > 1e-6:
            steps[:, 0] = (last - first) / (max(positions) - min(positions))
        else:
            steps[:, 0] = slice_dir * (e_fov.z if e_fov.z > 0 else 1.0)
        centre_index = np.array([0, r_mat.y // 2, r_mat.x // 2])
    affine = np.eye(4)
    affine[:3, :3] = steps
    affine[:3, 3] = first - steps @ centre_index
    return LPS_TO_RAS @ affine
