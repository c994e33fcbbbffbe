"""Cross-plane validation (mrisr.evaluation.crossplane) on the real clinical knee: the sagittal series scored against
the coronal series of the same exam."""

from __future__ import annotations

import numpy as np
import pytest

from mrisr import Volume, load_volume
from mrisr.data.cases import sub_volume
from mrisr.evaluation.crossplane import profile_offsets, validate_against
from mrisr.inference import selfsr

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def exam(sample_data):
    folder = sample_data / "knee_clinical_2d"
    coronal, sagittal = load_volume(folder / "CORO_DP_FS"), load_volume(folder / "SAG_DP_FS")
    for axis, (start, stop) in enumerate([(6, 16), (96, 288), (96, 288)]):  # the middle of the knee, to be quick
        coronal = sub_volume(coronal, axis, start, stop)
    for axis in (1, 2):
        sagittal = sub_volume(sagittal, axis, 64, 320)
    return sagittal, coronal


def test_profile_offsets_span_the_slice_and_sum_to_one():
    offsets, weights = profile_offsets(3.0, 0.5)
    assert len(offsets) == 6 and weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(offsets, [-1.25, -0.75, -0.25, 0.25, 0.75, 1.25])
    offsets, weights = profile_offsets(3.0, 0.5, "gaussian")
    assert offsets.max() < 4.5 and weights.argmax() in (len(weights) // 2 - 1, len(weights) // 2)


def test_a_known_misalignment_is_measured_and_corrected(exam):
    """The coronal series' affine moved 2 mm along its rows (as if the knee had moved): the shift is measured to
    0.2 mm and corrected (residual under 0.3 mm); cubic interpolation of the sagittal series beats nearest against
    the acquired coronal images, and the sagittal scan cubic-interpolated on selfsr's grid scores as cubic."""
    sagittal, coronal = exam
    moved = Volume(coronal.data, coronal.affine.copy(), coronal.meta)
    moved.affine[:3, 3] += 2.0 * moved.affine[:3, 1] / np.linalg.norm(moved.affine[:3, 1])
    grid = selfsr.upsample_slices(sagittal, selfsr.slice_geometry(sagittal))
    table = validate_against(sagittal, moved, {"cubic on selfsr's grid": grid}, log=lambda line: None)
    assert abs(abs(table.attrs["shift_mm"][1]) - 2.0) < 0.2 and abs(table.attrs["shift_mm"][2]) < 0.3, table.attrs
    assert np.linalg.norm(table.attrs["residual_shift_mm"]) < 0.3, table.attrs
    assert table.loc["nearest", "verdict"].startswith("PSNR worse"), table
    assert table.loc["nearest", "hfen_gain"] > 0 and table.loc["cubic", "psnr_db_gain"] == 0
    assert abs(table.loc["cubic on selfsr's grid", "psnr_db_gain"]) < 0.15, table
    assert table.attrs["thickness_mm"] == pytest.approx(3.0)


def test_selfsr_validate_against_prints_the_table(exam, tmp_path, monkeypatch, capsys):
    """``mrisr selfsr scan out --validate-against OTHER`` scores what it wrote against the other series (the network
    replaced here by cubic interpolation on its grid, to be quick: the CLI's path is what is tested)."""
    from mrisr.cli import main
    from mrisr.io import save_volume

    sagittal, coronal = exam
    monkeypatch.setattr(selfsr, "super_resolve", lambda volume, *args, **kwargs: Volume(
        *(lambda g: (g.data, g.affine))(selfsr.upsample_slices(volume, selfsr.slice_geometry(volume))),
        {**volume.meta, "selfsr": {"train_s": 0.0, "apply_s": 0.0}}))
    scan, other = save_volume(sagittal, tmp_path / "sag.nii.gz"), save_volume(coronal, tmp_path / "cor.nii.gz")
    assert main(["selfsr", str(scan), str(tmp_path / "sr.nii.gz"), "--validate-against", str(other)]) == 0
    out = capsys.readouterr().out
    assert "rigid shift between the series" in out and "PSNR gain vs cubic" in out
    for method in ("nearest", "linear", "cubic", "selfsr"):
        assert f"\n{method} " in out, out
