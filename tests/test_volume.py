"""The Volume type: validation, spacing derived from the affine, time series."""

from __future__ import annotations

import numpy as np
import pytest

from mrisr.volume import Volume


def test_spacing_is_column_norms_of_affine():
    affine = np.eye(4)
    affine[:3, :3] = [[0, 0, -0.5], [0, 0.7, 0], [2.0, 0, 0]]
    volume = Volume(np.zeros((3, 4, 5)), affine)
    assert volume.spacing == (2.0, 0.7, 0.5)
    assert volume.data.dtype == np.float32


@pytest.mark.parametrize("shape", [(4, 4), (1, 2, 3, 4, 5)])
def test_rejects_wrong_dimensions(shape):
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros(shape))


def test_rejects_singular_affine():
    with pytest.raises(ValueError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))


def test_from_spacing_rejects_non_positive():
    with pytest.raises(ValueError, match="positive"):
        Volume.from_spacing(np.zeros((2, 2, 2)), (1.0, -1.0, 1.0))


def test_time_series_frames_share_geometry():
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    series = Volume.from_spacing(data, (2.0, 1.0, 1.0), {"source_format": "npy"})
    frames = list(series.frames())
    assert series.n_frames == 2 and series.shape == (3, 4, 5)
    assert [f.meta["frame"] for f in frames] == [0, 1]
    np.testing.assert_array_equal(frames[1].data, data[1])
    assert all(np.array_equal(f.affine, series.affine) for f in frames)


def test_with_data_checks_grid():
    volume = Volume.from_spacing(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="does not match"):
        volume.with_data(np.zeros((3, 4, 6)))


def test_a_resampled_affine_puts_each_new_voxel_where_the_old_index_says():
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    affine[:3, :3] = rng.normal(size=(3, 3)) + 2 * np.eye(3)
    affine[:3, 3] = [10.0, -4.0, 7.0]
    volume = Volume(np.zeros((4, 5, 6), np.float32), affine)
    new = volume.resampled_affine({1: (0.5, -0.25), 2: (1, 3)})
    for j in [(0, 0, 0), (1, 2, 3), (3, 7, 1)]:
        old = (j[0], 0.5 * j[1] - 0.25, j[2] + 3)  # axis 0 kept
        np.testing.assert_allclose(new @ [*j, 1], volume.affine @ [*old, 1], atol=1e-12)
