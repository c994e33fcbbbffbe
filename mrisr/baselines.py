"""Interpolation baselines: what any super-resolution result must beat, computed from the same degraded input.

A baseline resamples the low-resolution `Volume` onto the high-resolution grid using the two volumes' affines (so
the voxel alignment set by the degradation is respected exactly) with a B-spline of order 0 (nearest), 1 (linear)
or 3 (cubic, ``scipy.ndimage``). When the degradation kept the grid (k-space zero-filling, blur), the degraded
input is already on the high-resolution grid and is itself the baseline.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mrisr.volume import Volume

SPLINE_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}
SAME_GRID = "degraded input"


def resample(lr: Volume, grid: Volume, order: int) -> Volume:
    """``lr`` interpolated onto ``grid``'s voxels (shape and affine) with a spline of ``order``; outside the field of
    view of ``lr`` the edge value is continued. Returns a Volume with ``grid``'s geometry (and ``lr``'s frames)."""
    index_map = np.linalg.inv(lr.affine) @ grid.affine  # grid voxel index -> lr voxel index
    matrix, offset = index_map[:3, :3], index_map[:3, 3]
    if np.allclose(matrix, np.diag(np.diag(matrix))):
        matrix = np.diag(matrix)  # axis-aligned: scipy takes the fast separable path
    frames = [ndimage.affine_transform(frame.data, matrix, offset, output_shape=grid.shape, order=order,
                                       mode="nearest") for frame in lr.frames()]
    data = frames[0] if lr.data.ndim == 3 else np.stack(frames)
    return Volume(data, grid.affine.copy(), {**lr.meta, "interpolation": f"spline order {order}"})


def baselines(lr: Volume, grid: Volume) -> dict[str, Volume]:
    """The interpolation baselines for ``lr`` on ``grid``: ``{"nearest", "linear", "cubic"}`` or, when ``lr`` is
    already on that grid, ``{"degraded input": lr}``."""
    if lr.shape == grid.shape and np.allclose(lr.affine, grid.affine, atol=1e-6):
        return {SAME_GRID: lr}
    return {name: resample(lr, grid, order) for name, order in SPLINE_ORDERS.items()}
