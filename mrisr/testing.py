"""Simulated acquisitions for the tests and benchmarks (the library itself never imports this module): a fully
sampled multi-coil Cartesian acquisition written as ISMRMRD HDF5 (`write_ismrmrd`), and centred zero-padding of
k-space or image axes (`center_pad`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from mrisr.io.atomic import atomic_path
from mrisr.kspace import fftc


def center_pad(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Zero-pad ``axis`` to ``size`` samples keeping the centre index ``n // 2`` at ``size // 2``."""
    n = array.shape[axis]
    if size < n:
        raise ValueError(f"cannot pad {n} samples to {size}")
    before = size // 2 - n // 2
    widths = [(0, 0)] * array.ndim
    widths[axis] = (before, size - n - before)
    return np.pad(array, widths)


def write_ismrmrd(path: str | Path, image: np.ndarray, spacing=(1.0, 1.0, 1.0), n_coils: int = 8,
                  readout_oversampling: int = 2, layout: str = "3d", noise_lines: int = 4,
                  field_strength_t: float = 3.0, seed: int = 0) -> Path:
    """Simulate a fully sampled multi-coil Cartesian acquisition of ``image`` and write it as ISMRMRD HDF5.

    ``image``: real or complex ``(z, y, x)`` array (mrisr axes), ``spacing`` in mm along those axes. Coil
    sensitivities are smooth and normalised so their root-sum-of-squares is 1 everywhere: an exact reconstruction
    returns ``abs(image)``. The readout is oversampled ``readout_oversampling`` times (object padded with zeros, as
    the scanner's wider readout FOV sees air). ``layout="3d"`` encodes z with ``kspace_encode_step_2``;
    ``layout="slices"`` stores z in image space in the ``slice`` counter with alternating sign, like the mridata.org
    knees. A few noise-measurement lines come first, as on a scanner. Written to a temporary name, then renamed.
    """
    path = Path(path)
    image = np.asarray(image)
    nz, ny, nx = image.shape
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in image.shape), indexing="ij")
    angles = 2 * np.pi * np.arange(n_coils) / n_coils
    sens = np.stack([np.exp(-((yy - 0.9 * np.cos(a)) ** 2 + (xx - 0.9 * np.sin(a)) ** 2 + 0.3 * zz**2))
                     * np.exp(1j * (a + 0.5 * xx)) for a in angles])
    sens /= np.sqrt(np.sum(np.abs(sens) ** 2, axis=0, keepdims=True))
    coil_images = (sens * image[None]).astype(np.complex64)
    ox = nx * readout_oversampling
    wide = np.zeros((n_coils, nz, ny, ox), np.complex64)
    wide[..., ox // 2 - nx // 2: ox // 2 - nx // 2 + nx] = coil_images
    kspace = fftc(wide, axes=(1, 2, 3) if layout == "3d" else (2, 3)).astype(np.complex64)

    fov = np.array(spacing, float) * np.array(image.shape)
    header = ismrmrd.xsd.ismrmrdHeader(
        experimentalConditions=ismrmrd.xsd.experimentalConditionsType(H1resonanceFrequency_Hz=int(42.58e6 * 3)),
        acquisitionSystemInformation=ismrmrd.xsd.acquisitionSystemInformationType(
            systemFieldStrength_T=field_strength_t, receiverChannels=n_coils),
        measurementInformation=ismrmrd.xsd.measurementInformationType(protocolName="mrisr simulated phantom",
                                                                       patientPosition="HFS"),
        encoding=[ismrmrd.xsd.encodingType(
            trajectory=ismrmrd.xsd.trajectoryType.CARTESIAN,
            encodedSpace=_space(ox, ny, nz if layout == "3d" else 1, fov[2] * readout_oversampling, fov[1],
                                fov[0] if layout == "3d" else spacing[0]),
            reconSpace=_space(nx, ny, nz if layout == "3d" else 1, fov[2], fov[1],
                              fov[0] if layout == "3d" else spacing[0]),
            encodingLimits=ismrmrd.xsd.encodingLimitsType(
                kspace_encoding_step_1=ismrmrd.xsd.limitType(minimum=0, maximum=ny - 1, center=ny // 2),
                kspace_encoding_step_2=ismrmrd.xsd.limitType(minimum=0, maximum=(nz - 1) if layout == "3d" else 0,
                                                             center=nz // 2 if layout == "3d" else 0),
                slice=ismrmrd.xsd.limitType(minimum=0, maximum=0 if layout == "3d" else nz - 1, center=0)))])

    n_lines = noise_lines + nz * ny
    records = np.zeros(n_lines, acquisition_dtype)
    head = records["head"]
    head["version"] = 1
    head["active_channels"] = head["available_channels"] = n_coils
    head["number_of_samples"] = ox
    head["center_sample"] = ox // 2
    head["read_dir"], head["phase_dir"], head["slice_dir"] = (0, 0, 1), (1, 0, 0), (0, 1, 0)  # coronal-ish LPS
    noise_flag = np.uint64(1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1))
    empty = np.zeros(0, np.float32)
    for i in range(noise_lines):
        head["flags"][i] = noise_flag
        noise = (rng.standard_normal((n_coils, ox)) + 1j * rng.standard_normal((n_coils, ox))).astype(np.complex64)
        records["data"][i], records["traj"][i] = noise.view(np.float32).ravel(), empty
    dz = np.array([0.0, 1.0, 0.0]) * spacing[0]
    i = noise_lines
    for z in range(nz):
        for y in range(ny):
            head["idx"]["kspace_encode_step_1"][i] = y
            if layout == "3d":
                head["idx"]["kspace_encode_step_2"][i] = z
                head["position"][i] = (0, 0, 0)
                line = kspace[:, z, y]
            else:
                head["idx"]["slice"][i] = z
                head["position"][i] = (z - nz // 2) * dz
                line = kspace[:, z, y] * (-1) ** z  # the GE knees' chop: a sign per slice
            head["scan_counter"][i] = i
            records["data"][i], records["traj"][i] = np.ascontiguousarray(line).view(np.float32).ravel(), empty
            i += 1

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("dataset")
        xml = group.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
        text = ismrmrd.xsd.ToXML(header)
        xml[0] = text.encode() if isinstance(text, str) else text
        group.create_dataset("data", data=records, maxshape=(None,), chunks=(min(n_lines, 256),))
    return path


def _space(nx, ny, nz, fx, fy, fz):
    return ismrmrd.xsd.encodingSpaceType(matrixSize=ismrmrd.xsd.matrixSizeType(x=int(nx), y=int(ny), z=int(nz)),
                                         fieldOfView_mm=ismrmrd.xsd.fieldOfViewMm(x=float(fx), y=float(fy),
                                                                                  z=float(fz)))
