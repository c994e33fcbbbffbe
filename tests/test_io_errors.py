"""Bad input: each a one-line InputError that names the file and the problem."""

from __future__ import annotations

import shutil

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
import scipy.io

from mrisr import load_volume
from mrisr.errors import InputError
from mrisr.testing import write_ismrmrd


def _error(path, **options) -> str:
    with pytest.raises(InputError) as info:
        load_volume(path, **options)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_missing_path(tmp_path):
    assert "no such file" in _error(tmp_path / "nothing.nii.gz")


def test_truncated_hdf5(tmp_path):
    good = write_ismrmrd(tmp_path / "good.h5", np.ones((4, 8, 8)), n_coils=2)
    data = good.read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _error(bad)


def test_hdf5_that_is_not_ismrmrd(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["volume"] = np.zeros((4, 4, 4))
    message = _error(path)
    assert "neither ISMRMRD" in message and "volume" in message


def test_dicom_folder_with_two_series(dess_dir, tmp_path):
    folder = tmp_path / "two_series"
    folder.mkdir()
    files = sorted(dess_dir.glob("*.dcm"))[:4]
    second_uid = pydicom.uid.generate_uid()
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        if i >= 2:
            ds.SeriesInstanceUID = second_uid
            ds.SeriesDescription = "second series"
            ds.SeriesNumber = 99
        ds.save_as(folder / f"slice{i}.dcm")
    message = _error(folder)
    assert "holds 2 series" in message and "second series" in message
    chosen = load_volume(folder, series="99")
    assert chosen.data.shape == (2, 512, 512)
    assert chosen.meta["series_description"] == "second series"


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    assert "no DICOM images" in _error(tmp_path)


def test_dicom_folder_with_missing_slice(dess_dir, tmp_path):
    def position(f):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.array(ds.ImageOrientationPatient, float)
        return float(np.array(ds.ImagePositionPatient, float) @ np.cross(iop[:3], iop[3:]))

    by_position = sorted(sorted(dess_dir.glob("*.dcm")), key=position)[:6]
    for f in by_position[:2] + by_position[3:]:  # the third slice of six is missing
        shutil.copy(f, tmp_path / f.name)
    assert "spacing varies" in _error(tmp_path)


def test_nifti_with_nan(tmp_path):
    data = np.ones((6, 5, 4), np.float32)
    data[1, 2, 3] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    assert "NaN" in _error(path)
    volume = load_volume(path, nan=0.0)
    assert np.isfinite(volume.data).all() and volume.meta["replaced_non_finite"] == 1


def test_2d_array_where_a_volume_is_required(tmp_path):
    path = tmp_path / "image.npy"
    np.save(path, np.ones((32, 32), np.float32))
    assert "2-D array" in _error(path)
    assert load_volume(path, axes="RC").data.shape == (1, 32, 32)  # explicit: a one-slice volume


def test_2d_nifti_where_a_volume_is_required(tmp_path):
    path = tmp_path / "image.nii"
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), str(path))
    assert "needs 3 axes" in _error(path)


def test_mat_with_two_arrays_needs_a_variable(tmp_path):
    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"a": np.ones((4, 4, 4)), "b": np.zeros((4, 4, 4))})
    assert "choose one with variable" in _error(path)
    assert "no variable 'c'" in _error(path, variable="c")


def test_option_that_does_not_apply(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.ones((4, 4, 4), np.float32))
    assert "do not apply" in _error(path, series="1")


def test_unknown_format(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_text("?")
    assert "unknown format" in _error(path)


def test_failed_write_leaves_nothing(tmp_path):
    from mrisr.io.atomic import atomic_path

    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target, suffix=".nii.gz") as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []
