"""Interpolation baselines (geometry exact, same input as the models) and the baseline table on the real knee."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrisr import Volume, save_volume
from mrisr.cli import main
from mrisr.evaluation.baselines import SAME_GRID, baselines, resample
from mrisr.evaluation.tables import COLUMNS, baseline_table
from mrisr.imaging import metrics
from mrisr.imaging.foreground import foreground_mask
from mrisr.physics.degrade import Degradation, Downsample, preset


def test_area_downsampled_ramp_comes_back_exactly_with_linear_and_cubic():
    """A linear ramp survives block averaging as the ramp sampled at the block centres, so an interpolator that
    puts the low-resolution voxels in the right place reproduces it; half a voxel off would not. (The cubic spline
    reproduces a ramp away from the edges only: its edge error decays by 0.27 per low-resolution voxel.)"""
    s, r, c = np.meshgrid(np.arange(2), np.arange(96), np.arange(128), indexing="ij")
    hr = Volume(np.float32(3.0 * r - 2.0 * c + 100), np.diag([2.0, 0.5, 0.5, 1.0]))
    lr = Degradation([Downsample(4, "area", axes=(1, 2))])(hr)
    out = baselines(lr, hr)
    assert list(out) == ["nearest", "linear", "cubic"]
    interior = (slice(None), slice(24, -24), slice(24, -24))  # 6 low-resolution voxels from the edge
    np.testing.assert_allclose(out["linear"].data[interior], hr.data[interior], atol=1e-3)
    np.testing.assert_allclose(out["cubic"].data[interior], hr.data[interior], atol=1e-2)
    assert np.abs(out["nearest"].data - hr.data).max() > 1.0  # nearest is a staircase
    for vol in out.values():
        assert vol.shape == hr.shape and np.allclose(vol.affine, hr.affine)


def test_same_grid_degradation_is_its_own_baseline(dess_block):
    lr = preset("knee_fast_acquisition_noise_free")(dess_block)
    out = baselines(lr, dess_block)
    assert list(out) == [SAME_GRID] and out[SAME_GRID] is lr


def test_cine_frames_are_interpolated_frame_by_frame(cardiac):
    lr = preset("cardiac_x4_noise_free")(cardiac)
    cubic = resample(lr, cardiac, order=3)
    assert cubic.data.shape == cardiac.data.shape
    single = resample(Volume(lr.data[7], lr.affine), Volume(cardiac.data[7], cardiac.affine), order=3)
    np.testing.assert_allclose(cubic.data[7], single.data, atol=1e-5)


@pytest.mark.parametrize("name", ["knee_fast_acquisition_noise_free", "cardiac_x4_noise_free"])
def test_baseline_table_on_real_knee(dess_block, name):
    degradation = preset(name)
    table = baseline_table(dess_block, degradation)
    methods = ["degraded input"] if name.startswith("knee") else ["nearest", "linear", "cubic"]
    assert list(table.index) == [(m, region) for m in methods for region in ("foreground", "whole")]
    assert list(table.columns) == COLUMNS and np.isfinite(table.to_numpy()).all()
    # The table's numbers are the metric functions' numbers on the same volumes.
    lr = degradation(dess_block, seed=0)
    method = methods[-1]
    pred = baselines(lr, dess_block)[method].data
    mask = foreground_mask(dess_block)
    data_range = float(np.ptp(dess_block.data))
    assert table.loc[(method, "foreground"), "psnr_db"] == pytest.approx(
        metrics.psnr(pred, dess_block.data, data_range, mask, pooled=True), abs=1e-6)
    assert table.loc[(method, "whole"), "hfen"] == pytest.approx(
        metrics.hfen(pred, dess_block.data, ndim=degradation.ndim, pooled=True), abs=1e-6)
    if name == "cardiac_x4_noise_free":  # cubic interpolation beats nearest neighbour on real anatomy
        assert table.loc[("cubic", "foreground"), "psnr_db"] > table.loc[("nearest", "foreground"), "psnr_db"]
        assert table.loc[("cubic", "foreground"), "ssim"] > table.loc[("nearest", "foreground"), "ssim"]


def test_cli_baselines_prints_and_writes_the_table(dess_block, tmp_path, capsys):
    path = save_volume(dess_block, tmp_path / "knee.nii.gz")
    csv = tmp_path / "out" / "table.csv"
    assert main(["baselines", str(path), "--preset", "cardiac_x4_noise_free", "knee_fast_acquisition_noise_free",
                 "--json", "--csv", str(csv)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {(r["preset"], r["method"]) for r in records} == {
        ("cardiac_x4_noise_free", "nearest"), ("cardiac_x4_noise_free", "linear"), ("cardiac_x4_noise_free", "cubic"),
        ("knee_fast_acquisition_noise_free", "degraded input")}
    assert csv.read_text().splitlines()[0] == "preset,method,region," + ",".join(COLUMNS)
    assert main(["baselines", str(path), "--preset", "cardiac_x4_noise_free"]) == 0
    assert "degraded in" in capsys.readouterr().out
    assert main(["baselines", str(tmp_path / "missing.nii.gz")]) == 1
    assert "missing.nii.gz" in capsys.readouterr().err
