"""`Volume`: the one in-memory image type of mrisr, and its axis convention."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# DICOM and ISMRMRD give positions in the patient's LPS+ frame; NIfTI and mrisr use RAS+.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NORMALIZATION_PERCENTILE = 99.5


@dataclass
class Volume:
    """A scalar MR image on a regular grid (or a time series of them), with its geometry.

    **Axis convention (the whole project uses it).** ``data[s, r, c]``:

    * axis 0, ``s``: the **slice axis**: the through-plane direction of the stack as acquired (for a 3D
      acquisition, the partition direction). ``data[k]`` is one slice.
    * axis 1, ``r``: rows of a slice, top to bottom as a viewer displays ``data[k]``.
    * axis 2, ``c``: columns of a slice, left to right.

    A time series (cine) carries a leading time axis: ``data[t, s, r, c]``; `frames` splits it.
    This is the ``(D, H, W)`` order of ``torch.nn.Conv3d``, so ``torch.from_numpy(v.data)[None, None]`` is a batch.

    Attributes:
        data: float32 array, 3D ``(S, R, C)`` or 4D ``(T, S, R, C)``.
        affine: 4x4 float64 matrix mapping voxel indices ``(s, r, c, 1)`` to scanner coordinates in mm, in
            the RAS+ frame of NIfTI (+x towards the patient's Right, +y Anterior, +z Superior; DICOM's LPS+ has x
            and y negated). Column ``k`` is the step in mm taken by one voxel along axis ``k``.
        meta: small dict. Keys every loader sets: ``source_format`` (``"dicom"``, ``"nifti"``, ``"ismrmrd"``,
            ``"fastmri"``, ``"mat"``, ``"npy"``, ``"phantom"``), ``source_path``. Where known:
            ``series_description`` (str), ``field_strength_t`` (tesla), ``phase_encoding_axes`` (tuple of array
            axes along which the scan was phase encoded, in the convention above), ``frame_time_ms``,
            ``slice_thickness_mm`` (the thickness of a slice along axis 0, which may differ from its spacing).

    ``spacing`` (mm per voxel along axes 0, 1, 2: centre-to-centre distance) is derived from ``affine``.
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim not in (3, 4):
            raise ValueError(f"a Volume holds a 3D (S, R, C) or 4D (T, S, R, C) array, not shape {self.data.shape}")
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4) or not np.all(np.isfinite(self.affine)):
            raise ValueError(f"affine must be a finite 4x4 matrix, got {self.affine!r}")
        if abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise ValueError("affine is singular: a voxel axis has zero length or two axes are parallel")
        self.meta = dict(self.meta)

    @classmethod
    def from_spacing(cls, data: np.ndarray, spacing=(1.0, 1.0, 1.0), meta: dict | None = None) -> Volume:
        """A volume whose orientation is unknown: axis k maps to scanner axis k with ``spacing[k]`` mm steps."""
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive numbers in mm, got {spacing}")
        return cls(data, np.diag([*spacing, 1.0]), meta or {})

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along axes (slice, row, column)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(S, R, C)`` (without the time axis)."""
        return tuple(self.data.shape[-3:])

    @property
    def n_frames(self) -> int:
        """Number of time frames: 1 for a plain volume."""
        return self.data.shape[0] if self.data.ndim == 4 else 1

    def frames(self) -> Iterator[Volume]:
        """The 3D volumes of a time series, in time order (a plain volume yields itself)."""
        if self.data.ndim == 3:
            yield self
            return
        for t in range(self.n_frames):
            yield self.with_data(self.data[t], frame=t)

    def with_data(self, data: np.ndarray, **meta) -> Volume:
        """Same geometry, new voxel values (same spatial shape), metadata updated by ``meta``."""
        if tuple(np.shape(data)[-3:]) != self.shape:
            raise ValueError(f"new data shape {np.shape(data)} does not match the volume's grid {self.shape}")
        return Volume(data, self.affine.copy(), {**self.meta, **meta})

    def resampled_affine(self, grid: dict[int, tuple[float, float]]) -> np.ndarray:
        """The affine of another grid over the same scanner space: ``grid = {axis: (a, b)}`` puts that grid's voxel
        ``j`` along volume ``axis`` (0, 1 or 2) at this grid's voxel index ``a * j + b`` (``a``: this grid's voxels
        per new voxel, ``1 / scale`` for an upsampling; ``b``: where the new voxel 0 sits). Other axes are kept."""
        affine = self.affine.copy()
        for axis, (a, b) in grid.items():
            affine[:3, 3] += b * self.affine[:3, axis]
            affine[:3, axis] = a * self.affine[:3, axis]
        return affine

    def describe(self) -> dict[str, Any]:
        """What `mrisr info` prints: format, shape, spacing, affine, intensity range, metadata."""
        finite = self.data[np.isfinite(self.data)]
        return {
            "format": self.meta.get("source_format"),
            "path": self.meta.get("source_path"),
            "shape": list(self.data.shape),
            "axes": "(time, slice, row, column)" if self.data.ndim == 4 else "(slice, row, column)",
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "affine": np.round(self.affine, 6).tolist(),
            "intensity_range": [float(finite.min()), float(finite.max())] if finite.size else None,
            "meta": {k: v for k, v in self.meta.items() if k not in ("source_format", "source_path")},
        }

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (f"Volume(shape={self.data.shape}, spacing_mm=({spacing}), "
                f"format={self.meta.get('source_format')!r})")


def intensity_scale(data) -> float:
    """A scan's intensity unit: its 99.5th percentile (robust to a few very bright voxels). Networks see
    ``data / intensity_scale(data)``, in training (`mrisr.data.pipeline.prepare_subject`) and inference alike.

    ``data``: a numpy array, or a torch tensor (computed where it lies, e.g. on the GPU, with numpy's linear
    interpolation between order statistics)."""
    if isinstance(data, np.ndarray) or not hasattr(data, "flatten"):
        scale = float(np.percentile(data, NORMALIZATION_PERCENTILE))
    else:
        ordered = data.flatten().sort().values
        position = (ordered.numel() - 1) * NORMALIZATION_PERCENTILE / 100
        low, high = float(ordered[int(position)]), float(ordered[min(int(position) + 1, ordered.numel() - 1)])
        scale = low + (high - low) * (position - int(position))
    if not scale > 0:
        raise ValueError("the image is empty (99.5th percentile <= 0): nothing to normalise by")
    return scale
