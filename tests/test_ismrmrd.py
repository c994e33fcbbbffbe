"""ISMRMRD raw reconstruction on genuine files written with the ismrmrd package from a known phantom."""

from __future__ import annotations

import tracemalloc

import ismrmrd
import numpy as np
import pytest

from mrisr import load_volume
from mrisr.data.phantom import knee_phantom
from mrisr.testing import write_ismrmrd

SPACING = (1.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def phantom():
    return knee_phantom(shape=(16, 40, 36), spacing=SPACING, seed=3).data


@pytest.mark.parametrize("layout", ["3d", "slices"])
def test_reconstruction_matches_phantom(tmp_path, phantom, layout):
    path = write_ismrmrd(tmp_path / "knee.h5", phantom, spacing=SPACING, n_coils=8, layout=layout)
    volume = load_volume(path)
    assert volume.data.shape == phantom.shape  # readout oversampling (2x) removed
    np.testing.assert_allclose(volume.data, phantom, atol=1e-5 * phantom.max())
    np.testing.assert_allclose(volume.spacing, SPACING, rtol=1e-6)
    assert volume.meta["field_strength_t"] == 3.0
    assert volume.meta["phase_encoding_axes"] == ((0, 1) if layout == "3d" else (1,))


def test_file_is_genuine_ismrmrd(tmp_path, phantom):
    path = write_ismrmrd(tmp_path / "knee.h5", phantom, spacing=SPACING, n_coils=4, noise_lines=2)
    dataset = ismrmrd.Dataset(str(path), create_if_needed=False)
    header = ismrmrd.xsd.CreateFromDocument(dataset.read_xml_header())
    assert header.encoding[0].encodedSpace.matrixSize.x == 2 * phantom.shape[2]
    noise, line = dataset.read_acquisition(0), dataset.read_acquisition(2 + 5)
    assert noise.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    assert line.data.shape == (4, 2 * phantom.shape[2]) and line.idx.kspace_encode_step_1 == 5
    assert dataset.number_of_acquisitions() == 2 + phantom.shape[0] * phantom.shape[1]
    dataset.close()


def test_noise_lines_are_not_used(tmp_path, phantom):
    a = load_volume(write_ismrmrd(tmp_path / "a.h5", phantom, spacing=SPACING, n_coils=2, noise_lines=0))
    b = load_volume(write_ismrmrd(tmp_path / "b.h5", phantom, spacing=SPACING, n_coils=2, noise_lines=6))
    np.testing.assert_array_equal(a.data, b.data)


def test_chunk_size_does_not_change_result(tmp_path, phantom):
    path = write_ismrmrd(tmp_path / "knee.h5", phantom, spacing=SPACING, n_coils=2)
    np.testing.assert_array_equal(load_volume(path, chunk_size=7).data, load_volume(path, chunk_size=100000).data)


def test_3d_and_slice_layouts_give_the_same_geometry(tmp_path, phantom):
    a = load_volume(write_ismrmrd(tmp_path / "a.h5", phantom, spacing=SPACING, n_coils=2, layout="3d"))
    b = load_volume(write_ismrmrd(tmp_path / "b.h5", phantom, spacing=SPACING, n_coils=2, layout="slices"))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)


def test_peak_memory_is_a_small_multiple_of_the_kspace(tmp_path):
    image = knee_phantom(shape=(24, 64, 64), spacing=SPACING, seed=1).data
    n_coils = 8
    path = write_ismrmrd(tmp_path / "big.h5", image, spacing=SPACING, n_coils=n_coils)
    kspace_bytes = n_coils * image.size * 8  # complex64, recon grid
    tracemalloc.start()
    load_volume(path, chunk_size=256)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    file_bytes = path.stat().st_size
    assert file_bytes > 1.9 * kspace_bytes  # the file holds 2x oversampled readouts
    assert peak < 2.0 * kspace_bytes, f"peak {peak / 2**20:.1f} MiB for {kspace_bytes / 2**20:.1f} MiB of k-space"


def test_partition_stored_as_slices_can_declare_3d_phase_encoding(tmp_path, phantom):
    path = write_ismrmrd(tmp_path / "knee.h5", phantom, spacing=SPACING, n_coils=2, layout="slices")
    assert load_volume(path, phase_encoding_axes=(0, 1)).meta["phase_encoding_axes"] == (0, 1)


def test_rec_std_weights_coils_by_inverse_noise_variance(tmp_path, phantom):
    """mridata.org knees carry per-coil noise std in /dataset/rec_std; coils are weighted sqrt(w / sum w), w =
    1/std^2."""
    import h5py

    n_coils = 4
    path = write_ismrmrd(tmp_path / "knee.h5", phantom, spacing=SPACING, n_coils=n_coils)
    plain = load_volume(path).data
    with h5py.File(path, "a") as f:
        f["dataset"].create_dataset("rec_std", data=np.full((1, n_coils), 3.0, np.float32))
    np.testing.assert_allclose(load_volume(path).data, plain / np.sqrt(n_coils), rtol=1e-5, atol=1e-7)
    with h5py.File(path, "a") as f:
        f["dataset"]["rec_std"][0, 0] = 1e6  # a coil that is all noise no longer contributes
    weighted = load_volume(path).data
    assert not np.allclose(weighted, plain / np.sqrt(n_coils), rtol=1e-3)
