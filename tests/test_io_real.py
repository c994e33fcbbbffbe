"""Loading the real samples in ../shared/data: geometry checked against the DICOM headers themselves."""

from __future__ import annotations

import numpy as np
import pydicom

from mrisr import load_volume, save_volume
from mrisr.volume import LPS_TO_RAS


def test_dess_shape_and_spacing(dess):
    assert dess.data.shape == (80, 512, 512)
    assert dess.data.dtype == np.float32
    # Slice spacing is measured from ImagePositionPatient, which DICOM stores to 1e-4 mm.
    np.testing.assert_allclose(dess.spacing, (1.5, 0.3125, 0.3125), atol=1e-4)
    assert dess.meta["source_format"] == "dicom"
    assert dess.meta["field_strength_t"] == 3.0
    # InPlanePhaseEncodingDirection ROW -> phase along columns (axis 2); 3D acquisition -> slice axis too.
    assert dess.meta["phase_encoding_axes"] == (0, 2)


def test_dess_affine_matches_dicom_orientation(dess, dess_dir):
    files = sorted(dess_dir.glob("*.dcm"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    iop = np.array(headers[0].ImageOrientationPatient, float)
    normal_ras = (LPS_TO_RAS[:3, :3] @ np.cross(iop[:3], iop[3:]))
    slice_dir = dess.affine[:3, 0] / np.linalg.norm(dess.affine[:3, 0])
    assert abs(abs(slice_dir @ normal_ras) - 1) < 1e-6  # slice axis along the DICOM slice normal
    np.testing.assert_allclose(dess.affine[:3, 2] / 0.3125, LPS_TO_RAS[:3, :3] @ iop[:3], atol=1e-6)  # columns
    np.testing.assert_allclose(dess.affine[:3, 1] / 0.3125, LPS_TO_RAS[:3, :3] @ iop[3:], atol=1e-6)  # rows
    # Every file's position is the affine image of (its slice index, 0, 0): slices sit where the headers say.
    positions = {tuple(np.round(LPS_TO_RAS[:3, :3] @ np.array(h.ImagePositionPatient, float), 3)) for h in headers}
    mapped = {tuple(np.round((dess.affine @ [k, 0, 0, 1])[:3], 3)) for k in range(80)}
    assert mapped == positions


def test_dess_slices_ordered_by_position_not_file_name(dess, dess_dir):
    files = sorted(dess_dir.glob("*.dcm"))
    normal = None
    by_projection = []
    for f in files:
        ds = pydicom.dcmread(f)
        iop = np.array(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:]) if normal is None else normal
        by_projection.append((float(np.array(ds.ImagePositionPatient, float) @ normal), ds.pixel_array))
    by_projection.sort(key=lambda item: item[0])
    file_order_positions = [p for p, _ in sorted(zip([p for p, _ in by_projection], range(80)))]
    assert file_order_positions == sorted(file_order_positions)
    for k in (0, 1, 40, 79):
        np.testing.assert_array_equal(dess.data[k], by_projection[k][1].astype(np.float32))


def test_fair_knee_loads_with_spacing_from_omega(sample_data):
    path = sample_data / "knee_fair" / "knee3D.mat"
    for name in ("dataT", "dataR"):
        volume = load_volume(path, variable=name)
        assert volume.data.shape == (128, 64, 128)
        np.testing.assert_allclose(volume.spacing, (1.0, 62 / 64, 1.0))
        assert volume.data.max() > 50  # real anatomy, not an empty array
        assert volume.meta["variable"] == name


def test_acdc_cine_slice_loads_as_time_series(sample_data):
    volume = load_volume(sample_data / "cardiac_acdc_cine_slice" / "demo_data.mat", axes="RCT")
    assert volume.data.shape == (30, 1, 184, 256)
    assert volume.n_frames == 30
    frames = list(volume.frames())
    assert len(frames) == 30 and frames[0].shape == (1, 184, 256)
    assert not np.array_equal(frames[0].data, frames[10].data)  # the heart moves


def test_nifti_round_trip_keeps_array_affine_and_meta(dess, tmp_path):
    path = save_volume(dess, tmp_path / "dess.nii.gz")
    back = load_volume(path)
    np.testing.assert_array_equal(back.data, dess.data)
    np.testing.assert_allclose(back.affine, dess.affine, atol=1e-5)
    assert back.meta["phase_encoding_axes"] == dess.meta["phase_encoding_axes"]
    assert back.meta["series_description"] == dess.meta["series_description"]
    assert not list(tmp_path.glob(".*partial*"))  # no temporary file left behind


def test_nifti_int16_cache_is_close(dess, tmp_path):
    back = load_volume(save_volume(dess, tmp_path / "dess16.nii.gz", dtype="int16"))
    assert np.abs(back.data - dess.data).max() <= dess.data.max() / 30000
    assert (tmp_path / "dess16.nii.gz").stat().st_size < dess.data.nbytes / 2  # 2 bytes a voxel, then gzip


def test_nifti_from_other_tools_is_read_with_nibabel_affine(dess, tmp_path):
    import nibabel as nib

    path = save_volume(dess, tmp_path / "d.nii")
    img = nib.load(str(path))
    assert img.shape == (512, 512, 80)  # NIfTI (i, j, k): mrisr's axes reversed
    i, j, k = 7, 100, 33
    np.testing.assert_allclose(img.affine @ [i, j, k, 1], dess.affine @ [k, j, i, 1], atol=1e-4)
    assert np.asarray(img.dataobj)[i, j, k] == dess.data[k, j, i]


def test_dicom_cine_series_loads_as_time_series(dess_dir, tmp_path):
    """Two slice positions x three trigger times (made from real DESS files) -> (3, 2, 512, 512)."""
    files = sorted(dess_dir.glob("*.dcm"))[:6]
    sources = [pydicom.dcmread(f) for f in files]
    positions = [sources[0].ImagePositionPatient, sources[1].ImagePositionPatient]
    for i, ds in enumerate(sources):
        ds.ImagePositionPatient = positions[i % 2]
        ds.TriggerTime = 40.0 * (i // 2)
        ds.save_as(tmp_path / f"frame{5 - i}.dcm")  # file names in reverse order on purpose
    volume = load_volume(tmp_path)
    assert volume.data.shape == (3, 2, 512, 512)
    assert volume.meta["frame_time_ms"] == 40.0
    iop = np.array(sources[0].ImageOrientationPatient, float)
    along_normal = [float(np.array(p, float) @ np.cross(iop[:3], iop[3:])) for p in positions]
    first, second = np.argsort(along_normal)  # slice 0 is the position lower along the normal
    last_frame = sources[4:6]  # trigger time 80 ms, at positions 0 and 1
    np.testing.assert_array_equal(volume.data[2, 0], last_frame[first].pixel_array)
    np.testing.assert_array_equal(volume.data[2, 1], last_frame[second].pixel_array)
