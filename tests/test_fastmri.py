"""fastMRI HDF5: reconstruction_rss as stored, or RSS from multi-coil kspace with the header's crop and spacing."""

from __future__ import annotations

import h5py
import ismrmrd.xsd
import numpy as np

from mrisr import load_volume
from mrisr.data.phantom import knee_phantom
from mrisr.imaging.kspace import fftc
from mrisr.testing import center_pad


def _write_fastmri(path, image, n_coils=4, readout_oversampling=2):
    """Slices (S, R, C) -> a fastMRI-style file: rows oversampled, coils with sum |s|^2 = 1."""
    _, r, c = image.shape
    rows = np.linspace(-1, 1, r * readout_oversampling)[:, None]
    sens = np.stack([np.exp(-((rows - np.cos(a)) ** 2) - (np.linspace(-1, 1, c)[None] - np.sin(a)) ** 2)
                     for a in np.linspace(0, 2 * np.pi, n_coils, endpoint=False)]).astype(np.complex64)
    sens /= np.sqrt((np.abs(sens) ** 2).sum(0, keepdims=True))
    wide = center_pad(image.astype(np.complex64), 1, r * readout_oversampling)
    kspace = fftc(wide[:, None] * sens[None], axes=(-2, -1)).astype(np.complex64)
    space = lambda nx, ny, fx, fy: ismrmrd.xsd.encodingSpaceType(
        matrixSize=ismrmrd.xsd.matrixSizeType(x=nx, y=ny, z=1),
        fieldOfView_mm=ismrmrd.xsd.fieldOfViewMm(x=fx, y=fy, z=3.0))
    header = ismrmrd.xsd.ismrmrdHeader(
        experimentalConditions=ismrmrd.xsd.experimentalConditionsType(H1resonanceFrequency_Hz=127000000),
        acquisitionSystemInformation=ismrmrd.xsd.acquisitionSystemInformationType(systemFieldStrength_T=2.89),
        encoding=[ismrmrd.xsd.encodingType(
            trajectory=ismrmrd.xsd.trajectoryType.CARTESIAN,
            encodedSpace=space(r * readout_oversampling, c, 0.5 * r * readout_oversampling, 0.6 * c),
            reconSpace=space(r, c, 0.5 * r, 0.6 * c),
            encodingLimits=ismrmrd.xsd.encodingLimitsType())])
    with h5py.File(path, "w") as f:
        f["kspace"] = kspace
        f["reconstruction_rss"] = image.astype(np.float32) * 2  # distinguishable from the kspace path
        f["ismrmrd_header"] = ismrmrd.xsd.ToXML(header)
    return path


def test_fastmri_rss_and_kspace(tmp_path):
    image = knee_phantom(shape=(3, 40, 36), spacing=(3.0, 0.5, 0.6), seed=6).data
    path = _write_fastmri(tmp_path / "file1000000.h5", image)
    stored = load_volume(path)
    np.testing.assert_array_equal(stored.data, image * 2)
    reconstructed = load_volume(path, kspace=True)
    assert reconstructed.data.shape == image.shape
    np.testing.assert_allclose(reconstructed.data, image, atol=1e-5)
    np.testing.assert_allclose(reconstructed.spacing, (3.0, 0.5, 0.6), rtol=1e-6)
    assert reconstructed.meta["field_strength_t"] == 2.89
