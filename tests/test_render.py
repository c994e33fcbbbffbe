"""Animations and figures: frame count, panel layout, shared window, physical aspect, real knee."""

from __future__ import annotations

import imageio.v3 as iio
import matplotlib
import numpy as np
import pytest

from mrisr import Volume
from mrisr.evaluation.render import (GAP, HEADER_HEIGHT, LABEL_HEIGHT, animate, detail_box, error_gain, foreground_box,
                                     foreground_slices, orthoview)
from mrisr.imaging.foreground import foreground_mask
from mrisr.physics.degrade import preset

matplotlib.use("Agg")


def _gray(path):
    frames = iio.imread(path, index=None)
    return frames[..., 0] if frames.ndim == 4 else frames


def _constant(value, shape=(5, 30, 20), spacing=(1.0, 1.0, 1.0)):
    """A constant volume but for its last row, which differs per slice (GIF writers merge identical frames)."""
    data = np.full(shape, value, np.float32)
    data[:, -1] = np.linspace(0, 1, shape[0])[:, None]
    return Volume.from_spacing(data, spacing)


def test_gif_frames_panels_and_one_window(tmp_path):
    panels = {"dark": _constant(0.25), "mid": _constant(0.5), "HR": _constant(1.0)}
    # panel_size = the planes' short side: no scaling. Portrait planes: one column per panel.
    path = animate(panels, tmp_path / "a.gif", window=(0.0, 1.0), fps=5, gray_levels=256, panel_size=20, slices=None)
    frames = _gray(path)
    assert frames.shape == (5, HEADER_HEIGHT + LABEL_HEIGHT + 30, 3 * 20 + 2 * GAP)
    top = HEADER_HEIGHT + LABEL_HEIGHT
    for k, value in enumerate([0.25, 0.5, 1.0]):  # each panel in its place, on the shared window
        panel = frames[:, top + 2:top + 12, k * (20 + GAP) + 2: k * (20 + GAP) + 18]  # clear of the scale bar
        assert abs(float(np.median(panel)) - 255 * value) <= 1
    ramp = {"ramp": np.broadcast_to(np.linspace(0, 1, 20, dtype=np.float32), (2, 30, 20))}
    assert len(np.unique(_gray(animate(ramp, tmp_path / "r.gif", window=(0.0, 1.0), gray_levels=8,
                                       slices=None)))) <= 8
    assert _gray(animate(panels, tmp_path / "b.gif", step=2, slices=None)).shape[0] == 3


def test_error_maps_share_one_gain_written_on_the_frame(tmp_path):
    hr = _constant(0.5, shape=(4, 40, 24))  # portrait: a panel's tiles stack in its column
    panels = {"far": _constant(0.4, shape=(4, 40, 24)), "near": _constant(0.45, shape=(4, 40, 24)), "HR": hr}
    frames = _gray(animate(panels, tmp_path / "c.gif", window=(0.0, 1.0), errors=True, panel_size=24, slices=None,
                           gray_levels=256))
    assert frames.shape == (4, HEADER_HEIGHT + 2 * (LABEL_HEIGHT + 40) + GAP, 3 * 24 + 2 * GAP)
    row = HEADER_HEIGHT + LABEL_HEIGHT + 40 + GAP + LABEL_HEIGHT + 2
    far, near, under_hr = (float(np.median(frames[:, row:, k * (24 + GAP) + 2:k * (24 + GAP) + 22])) for k in range(3))
    # Errors 0.1 and 0.05: the gain is the largest power of two keeping 0.1 within half the window, 4: drawn as
    # 0.4 and 0.2 of full scale, in proportion, and nothing under the reference.
    assert abs(far - 0.4 * 255) <= 2 and abs(near - 0.2 * 255) <= 2 and under_hr == 0
    assert error_gain(np.array([0.1, 0.05]), (0.0, 1.0)) == 4


def test_frames_with_anatomy_crop_detail_and_size_budget(tmp_path):
    volume = np.zeros((20, 40, 40), np.float32)
    volume[5:15, 10:30, 12:28] = 1.0 + np.random.default_rng(0).random((10, 20, 16))  # the "subject"
    mask = foreground_mask(volume)
    assert list(foreground_slices(mask, axis=0)) == list(range(5, 15))
    box = foreground_box(mask, (1.0, 1.0, 1.0), margin_mm=2.0)
    for (start, stop), cut in zip([(5, 15), (10, 30), (12, 28)], box):  # 2 mm around the subject (+1 of smoothing)
        assert start - 3 <= cut.start <= start - 2 and stop + 2 <= cut.stop <= stop + 3
    noisy = volume + np.random.default_rng(1).random(volume.shape, dtype=np.float32) * 0.01
    frames = _gray(animate({"a": noisy, "b": volume}, tmp_path / "f.gif", axis=0, crop="foreground", panel_size=64))
    assert frames.shape[0] == 10  # the slices with the subject only
    # An error concentrated in one corner of the subject: the automatic detail box goes there.
    wrong = volume.copy()
    wrong[5:15, 12:18, 14:20] += 2.0
    r, c, n_rows, n_cols = detail_box(np.abs(wrong - volume), 0, (1.0, 1.0, 1.0), side_mm=6)
    assert (n_rows, n_cols) == (6, 6) and abs(r - 12) <= 1 and abs(c - 14) <= 1
    # A larger error outside the subject (ringing in the air): kept out of the box when the mask is given.
    wrong[5:15, 31:37, 14:20] += 5.0
    assert detail_box(np.abs(wrong - volume), 0, (1.0, 1.0, 1.0), 6)[0] >= 29  # reaches into the air below
    r, c, _, _ = detail_box(np.abs(wrong - volume), 0, (1.0, 1.0, 1.0), side_mm=6, inside=mask)
    assert 10 <= r and r + 6 <= 30 and 12 <= c and c + 6 <= 28  # within the subject
    with_detail = _gray(animate({"a": wrong, "b": volume}, tmp_path / "d.gif", axis=0, detail="auto", panel_size=40,
                                slices=None))
    assert with_detail.shape[1] == HEADER_HEIGHT + 2 * (LABEL_HEIGHT + 40) + GAP  # image and detail tiles
    # The size budget keeps every k-th frame: a GIF over max_bytes is thinned, never truncated mid-file.
    rng = np.random.default_rng(2)
    noise = {"n": rng.random((40, 64, 64), dtype=np.float32)}
    full = animate(noise, tmp_path / "full.gif", slices=None, max_bytes=None, panel_size=64)
    capped = animate(noise, tmp_path / "capped.gif", slices=None, max_bytes=full.stat().st_size // 3, panel_size=64)
    assert capped.stat().st_size <= full.stat().st_size // 3
    assert 5 <= _gray(capped).shape[0] <= 40 // 3 + 1


def test_coarse_grid_and_anisotropic_voxels_are_shown_in_mm(tmp_path):
    hr = Volume.from_spacing(np.random.default_rng(0).random((6, 16, 24), dtype=np.float32), (2.0, 1.0, 1.0))
    lr = preset("cardiac_x4_noise_free")(hr)  # (6, 4, 6) voxels of 4 mm in plane
    frames = _gray(animate({"HR": hr, "LR": lr}, tmp_path / "a.gif", axis=1, panel_size=12, slices=None,
                           reference="HR"))
    # Scrolling through rows shows (slice, column) planes: 6 slices of 2 mm become 12 pixels of 1 mm. Landscape
    # planes: one row per panel (the second, LR, free of the scale bar).
    assert frames.shape == (16, HEADER_HEIGHT + 2 * (LABEL_HEIGHT + 12) + GAP, 24)
    top = HEADER_HEIGHT + 2 * LABEL_HEIGHT + 12 + GAP
    lr_panel = frames[0, top:top + 12, :].astype(int)
    assert np.abs(np.diff(lr_panel[:, 8:12], axis=1)).max() <= 1  # one LR voxel spans 4 columns
    assert np.abs(np.diff(lr_panel[:, 10:14], axis=1)).max() > 1  # and the next starts there


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
    lr = preset("knee_fast_acquisition_noise_free")(dess_block, seed=0)
    path = animate({"LR input": lr, "HR": dess_block}, tmp_path / "knee.gif", axis=0, errors=True, crop="foreground",
                   detail="auto")
    frames = _gray(path)
    assert path.stat().st_size < 6_000_000
    # 24 x 160 x 160 voxels, the knee in all of them: one frame per slice, panels of 256 pixels (scaled 1.6 times),
    # each panel's image, detail and error tiles in a column.
    assert frames.shape[0] == dess_block.shape[0]
    assert frames.shape[2] == 2 * 256 + GAP and frames.shape[1] == HEADER_HEIGHT + 3 * (LABEL_HEIGHT + 256) + 2 * GAP
    fig = orthoview({"LR input": lr, "HR": dess_block}, errors=True, title="DESS knee block")
    assert len(fig.axes) == 3 * 3
    # The axis-1 cut shows slices of 1.5 mm against columns of 0.3125 mm: drawn 4.8 times taller per voxel.
    assert fig.axes[3].get_aspect() == pytest.approx(1.5 / 0.3125, rel=1e-3)
