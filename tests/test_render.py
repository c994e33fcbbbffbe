"""Animations and figures: frame count, panel layout, shared window, physical aspect, real knee."""

from __future__ import annotations

import imageio.v3 as iio
import matplotlib
import numpy as np
import pytest

from mrisr import Volume
from mrisr.degrade import preset
from mrisr.render import GAP, LABEL_HEIGHT, animate, orthoview

matplotlib.use("Agg")


def _gray(path):
    frames = iio.imread(path, index=None)
    return frames[..., 0] if frames.ndim == 4 else frames


def _constant(value, shape=(5, 20, 30), spacing=(1.0, 1.0, 1.0)):
    return Volume.from_spacing(np.full(shape, value, np.float32), spacing)


def test_gif_frames_panels_and_one_window(tmp_path):
    panels = {"dark": _constant(0.25), "mid": _constant(0.5), "HR": _constant(1.0)}
    path = animate(panels, tmp_path / "a.gif", window=(0.0, 1.0), fps=5, gray_levels=256)
    frames = _gray(path)
    assert frames.shape == (5, LABEL_HEIGHT + 20, 3 * 30 + 2 * GAP)
    for k, value in enumerate([0.25, 0.5, 1.0]):  # each panel in its place, on the shared window
        panel = frames[:, LABEL_HEIGHT + 2:, k * (30 + GAP) + 2: k * (30 + GAP) + 28]
        assert abs(float(np.median(panel)) - 255 * value) <= 1
    ramp = {"ramp": np.broadcast_to(np.linspace(0, 1, 30, dtype=np.float32), (2, 20, 30))}
    assert len(np.unique(_gray(animate(ramp, tmp_path / "r.gif", window=(0.0, 1.0), gray_levels=8)))) <= 8
    assert _gray(animate(panels, tmp_path / "b.gif", step=2)).shape[0] == 3
    with_errors = _gray(animate(panels, tmp_path / "c.gif", window=(0.0, 1.0), errors=True))
    assert with_errors.shape == (5, 2 * (LABEL_HEIGHT + 20) + GAP, 3 * 30 + 2 * GAP)
    error_row = with_errors[:, LABEL_HEIGHT + 20 + GAP + LABEL_HEIGHT + 2:]
    assert np.median(error_row[:, :, 2:28]) > np.median(error_row[:, :, 30 + GAP + 2: 30 + GAP + 28]) > 0
    assert np.median(error_row[:, :, 2 * (30 + GAP) + 2:]) == 0  # no error panel under the reference


def test_coarse_grid_and_anisotropic_voxels_are_shown_in_mm(tmp_path):
    hr = Volume.from_spacing(np.random.default_rng(0).random((6, 16, 24), dtype=np.float32), (2.0, 1.0, 1.0))
    lr = preset("cardiac_x4")(hr)  # (6, 4, 6) voxels of 4 mm in plane
    frames = _gray(animate({"LR": lr, "HR": hr}, tmp_path / "a.gif", axis=1))
    # Scrolling through rows shows (slice, column) planes: 6 slices of 2 mm become 12 pixels of 1 mm.
    assert frames.shape == (16, LABEL_HEIGHT + 12, 2 * 24 + GAP)
    lr_panel = frames[0, LABEL_HEIGHT:, :24].astype(int)
    assert np.abs(np.diff(lr_panel[:, :4], axis=1)).max() <= 1  # one LR voxel spans 4 columns


def test_bad_requests_name_the_problem(tmp_path):
    panels = {"a": np.zeros((4, 8, 8)), "b": np.ones((4, 8, 9))}
    with pytest.raises(ValueError, match="panel 'a' has shape"):
        animate(panels, tmp_path / "x.gif")
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        animate({"a": np.ones((4, 8, 8))}, tmp_path / "x.avi")
    with pytest.raises(ValueError, match="reference 'c'"):
        animate({"a": np.ones((4, 8, 8))}, tmp_path / "x.gif", reference="c")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_knee_animation_and_orthoview_on_real_dess(dess_block, tmp_path):
    lr = preset("knee_fast_acquisition")(dess_block, seed=0)
    path = animate({"LR input": lr, "HR": dess_block}, tmp_path / "knee.gif", errors=True, inset=(60, 60, 24))
    frames = _gray(path)
    assert frames.shape[0] == dess_block.shape[0]
    assert frames.shape[2] == 2 * 160 + GAP and frames.shape[1] == 2 * (LABEL_HEIGHT + 160) + GAP
    assert path.stat().st_size < 2_000_000
    fig = orthoview({"LR input": lr, "HR": dess_block}, errors=True, title="DESS knee block")
    assert len(fig.axes) == 3 * 3
    # The axis-1 cut shows slices of 1.5 mm against columns of 0.3125 mm: drawn 4.8 times taller per voxel.
    assert fig.axes[3].get_aspect() == pytest.approx(1.5 / 0.3125, rel=1e-3)
