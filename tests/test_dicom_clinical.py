"""A clinical 2D knee exam as a hospital CD exports it (../shared/data/knee_clinical_2d): JPEG Lossless compressed,
slightly oblique, thick slices with a gap; and the ways a DICOM folder goes wrong that must never pass in silence."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet

from mrisr import load_volume
from mrisr.errors import InputError
from mrisr.volume import LPS_TO_RAS

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def clinical(sample_data):
    return sample_data / "knee_clinical_2d"


def _headers(folder):
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.glob("*.dcm"))]


@pytest.mark.parametrize("series, slices, spacing, thickness", [("SAG_DP_FS", 24, 4.29, 3.3),
                                                                 ("CORO_DP_FS", 22, 3.9, 3.0)])
def test_jpeg_lossless_series_loads_with_its_gap(clinical, series, slices, spacing, thickness):
    headers = _headers(clinical / series)
    assert str(headers[0].file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"  # JPEG Lossless, compressed
    volume = load_volume(clinical / series)
    assert volume.shape == (slices, 384, 384)
    np.testing.assert_allclose(volume.spacing, (spacing, 0.44270834, 0.44270834), atol=1e-4)
    assert volume.meta["slice_thickness_mm"] == pytest.approx(thickness, abs=1e-4)  # thinner than the spacing: a gap
    # Lossless: the decoded pixels are the stored integers, exactly (pydicom's own decoding of one file).
    first = min(_headers(clinical / series), key=lambda h: float(np.array(h.ImagePositionPatient, float) @ np.cross(
        np.array(h.ImageOrientationPatient[:3], float), np.array(h.ImageOrientationPatient[3:], float))))
    pixels = pydicom.dcmread(first.filename).pixel_array
    assert pixels.dtype == np.uint16 and pixels.max() > 100
    np.testing.assert_array_equal(volume.data[0], pixels.astype(np.float32))


@pytest.mark.parametrize("series", ["SAG_DP_FS", "CORO_DP_FS"])
def test_oblique_affine_matches_the_dicom_tags(clinical, series):
    """Every voxel's position from the affine is where ImagePositionPatient, ImageOrientationPatient and
    PixelSpacing put it: the first and last pixel of every slice, in scanner coordinates (RAS)."""
    volume = load_volume(clinical / series)
    headers = _headers(clinical / series)
    iop = np.array(headers[0].ImageOrientationPatient, float)
    assert np.abs(iop).reshape(2, 3).max(1).max() < 1 - 1e-5  # oblique: rows and columns off the scanner's axes
    row_dir, col_dir = iop[:3], iop[3:]
    dr, dc = (float(v) for v in headers[0].PixelSpacing)
    expected, mapped = set(), set()
    for h in headers:
        ipp = np.array(h.ImagePositionPatient, float)
        last = ipp + (h.Columns - 1) * dc * row_dir + (h.Rows - 1) * dr * col_dir
        expected |= {tuple(np.round(LPS_TO_RAS[:3, :3] @ p, 2)) for p in (ipp, last)}
    for k in range(volume.shape[0]):
        for voxel in ((k, 0, 0), (k, volume.shape[1] - 1, volume.shape[2] - 1)):
            mapped.add(tuple(np.round((volume.affine @ [*voxel, 1])[:3], 2)))
    assert mapped == expected


def test_a_corrupted_file_is_never_dropped_in_silence(clinical, tmp_path):
    """The last file overwritten with 600 random bytes: an error naming it; with skip_unreadable, a warning
    naming it and one slice fewer."""
    folder = tmp_path / "sag"
    shutil.copytree(clinical / "SAG_DP_FS", folder)
    bad = sorted(folder.glob("*.dcm"))[-1]
    bad.write_bytes(os.urandom(600))
    with pytest.raises(InputError, match=rf"{bad.name}: not a DICOM file.*skip_unreadable"):
        load_volume(folder)
    with pytest.warns(RuntimeWarning, match=rf"not DICOM skipped: {bad.name}"):
        assert load_volume(folder, skip_unreadable=True).shape == (23, 384, 384)


def test_a_missing_middle_slice_is_reported_where_it_is(clinical, tmp_path):
    folder = tmp_path / "coro"
    shutil.copytree(clinical / "CORO_DP_FS", folder)
    normal = np.cross(*np.split(np.array(_headers(folder)[0].ImageOrientationPatient, float), 2))
    by_position = sorted(folder.glob("*.dcm"), key=lambda f: float(
        np.array(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient, float) @ normal))
    by_position[10].unlink()
    with pytest.raises(InputError, match=r"a gap of 7.8 mm between slices 10 and 11 \(of 21"):
        load_volume(folder)


def test_a_dicomdir_of_two_series_lists_them_and_loads_the_one_chosen(clinical, tmp_path):
    fileset = FileSet()
    for series in ("SAG_DP_FS", "CORO_DP_FS"):
        for f in sorted((clinical / series).glob("*.dcm")):
            ds = pydicom.dcmread(f)
            ds.StudyDate, ds.StudyTime, ds.StudyID = "20170101", "120000", "1"  # anonymised away; a DICOMDIR needs them
            fileset.add(ds)
    fileset.write(tmp_path / "cd")  # as a CD export: DICOMDIR plus PT000000/ST000000/SE00000k/IM...
    dicomdir = tmp_path / "cd" / "DICOMDIR"
    (tmp_path / "cd" / "README.TXT").write_text("viewer notes: not listed in the DICOMDIR, so never read")
    for path in (tmp_path / "cd", dicomdir):
        with pytest.raises(InputError, match=r"holds 2 series.*'SAG DP FS \.'.*24 images.*'CORO DP FS'.*22 images"):
            load_volume(path)
    coronal = load_volume(dicomdir, series="CORO DP FS")
    np.testing.assert_array_equal(coronal.data, load_volume(clinical / "CORO_DP_FS").data)


def test_non_image_dicom_objects_are_named_when_left_out(clinical, tmp_path):
    folder = tmp_path / "with_report"
    shutil.copytree(clinical / "CORO_DP_FS", folder)
    report = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
    for tag in ("ImagePositionPatient", "Rows", "Columns"):
        delattr(report, tag)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = pydicom.uid.BasicTextSRStorage
    report.save_as(folder / "report.dcm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_volume(folder).shape == (22, 384, 384)
    assert any("report.dcm (Basic Text SR Storage)" in str(w.message) for w in caught), [str(w.message) for w in caught]
