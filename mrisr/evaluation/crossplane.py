"""Check a through-plane super-resolution against a real second acquisition: another series of the same exam.

A clinical exam often images one knee twice, sagittal and coronal, minutes apart in one frame of reference. The
sagittal series' slice axis (left-right, 3-4 mm apart) is sampled at in-plane resolution (0.4 mm) by the coronal
series' rows. So an estimate made from the sagittal series alone can be scored against acquired images it never saw
(`validate_against`):

1. **Resample through the affines** (`simulate_series`): every voxel of the other series is a point in scanner
   coordinates; the estimate is sampled there (cubic spline, `scipy.ndimage.map_coordinates`), at several points
   across the other series' slice thickness, weighted by its slice profile (rect, or Gaussian of FWHM the thickness):
   the images the other series would have acquired from the estimate. Points outside the estimate are left out.
2. **Rigid misalignment**: the knee may move between series. The translation between the cubic baseline's simulated
   series and the acquired one is measured (`skimage.registration.phase_cross_correlation`, to 0.1 voxel) and every
   method is resampled with it; it is reported in mm, and the residual shift after it. Rotations are not measured.
3. **Intensity scale**: two series have different contrast scalings. Each method's simulated images are mapped to
   the acquired ones by ``a x + b`` fitted (least squares, on the foreground) on one half of the slices and scored
   on the other, both ways: no slice is scored with a scale fitted on itself.
4. **Scores**: PSNR, SSIM and HFEN per acquired slice (`mrisr.evaluation.tables.slice_scores`) on the foreground of the
   acquired images inside the estimate's field of view; gains over cubic interpolation of the scan, with a circular
   block bootstrap interval over the slices and a verdict (`mrisr.evaluation.tables`).

The rows are nearest, linear and cubic interpolation of the scan itself and any estimates given (selfsr, selfsr +
DC). ``mrisr selfsr scan out --validate-against OTHER`` prints this table; ``experiments/selfsr_crossplane.py`` runs it
on the clinical knee both ways.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from mrisr.errors import InputError
from mrisr.evaluation.tables import bootstrap_interval, slice_scores, verdict
from mrisr.imaging.foreground import foreground_mask
from mrisr.physics.steps import FWHM_PER_SIGMA, PROFILES
from mrisr.volume import Volume

INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 3}
REFERENCE = "cubic"


def profile_offsets(thickness_mm: float, step_mm: float, profile: str = "rect") -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, weights)``: points across one slice along its normal (mm from its centre) at most ``step_mm``
    apart, and the slice profile's weights there (summing to 1): a rect ``thickness_mm`` wide, or a Gaussian of that
    FWHM out to 1.5 FWHM each side."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    reach = thickness_mm / 2 if profile == "rect" else 1.5 * thickness_mm
    n = max(1, int(np.ceil(2 * reach / step_mm)))
    offsets = ((np.arange(n) + 0.5) / n - 0.5) * 2 * reach
    weights = np.ones(n) if profile == "rect" else np.exp(-offsets ** 2 / (2 * (thickness_mm / FWHM_PER_SIGMA) ** 2))
    return offsets, weights / weights.sum()


def simulate_series(volume: Volume, series: Volume, thickness_mm: float, profile: str = "rect", order: int = 3,
                    shift_voxels=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """``(images, inside)``: ``volume`` (any grid, its affine in scanner mm) as ``series`` (``(S, R, C)``, axis 0 its
    slices) would have acquired it: sampled at every voxel of ``series`` shifted by ``shift_voxels`` (its own voxel
    units), averaged across its slice profile; ``inside`` marks the voxels whose every point lies in ``volume``."""
    offsets, weights = profile_offsets(thickness_mm, min(volume.spacing), profile)
    to_volume = np.linalg.inv(volume.affine) @ series.affine
    normal = series.affine[:3, 0] / np.linalg.norm(series.affine[:3, 0])
    normal_in_volume = np.linalg.inv(volume.affine)[:3, :3] @ normal  # volume voxels per mm along the normal
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in series.shape], indexing="ij"))
    grid -= np.asarray(shift_voxels, np.float64)[:, None, None, None]
    centres = np.einsum("ij,j...->i...", to_volume[:3, :3], grid) + to_volume[:3, 3, None, None, None]
    images = np.zeros(series.shape, np.float64)
    inside = np.ones(series.shape, bool)
    for offset, weight in zip(offsets, weights):
        points = centres + (offset * normal_in_volume)[:, None, None, None]
        inside &= np.all([(points[a] >= 0) & (points[a] <= volume.shape[a] - 1) for a in range(3)], axis=0)
        images += weight * ndimage.map_coordinates(volume.data, points, order=order, mode="nearest")
    return images.astype(np.float32), inside


def _fit_scale(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a, b = np.polyfit(x.astype(np.float64), y.astype(np.float64), 1)
    return float(a), float(b)


def rescaled(images: np.ndarray, acquired: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``images`` mapped to ``acquired`` by ``a x + b`` per half of the slices, each half's fitted on the other
    (on ``mask``)."""
    out = np.empty_like(images)
    halves = np.array_split(np.arange(images.shape[0]), 2)
    for scored, fitted in ((halves[0], halves[1]), (halves[1], halves[0])):
        m = mask[fitted]
        if m.sum() < 100:
            raise ValueError("too little overlap between the two series to fit an intensity scale")
        a, b = _fit_scale(images[fitted][m], acquired[fitted][m])
        out[scored] = a * images[scored] + b
    return out


def validate_against(scan: Volume, series: Volume, estimates: dict[str, Volume] | None = None,
                     thickness_mm: float | None = None, profile: str = "rect", log=print) -> pd.DataFrame:
    """Score interpolations of ``scan`` and the ``estimates`` made from it (name -> `Volume`) against the acquired
    ``series`` of the same exam (module docstring). ``thickness_mm``: the series' slice thickness (default its
    ``meta["slice_thickness_mm"]``, else its slice spacing); ``profile``: its slice profile.

    Returns one row per method: ``psnr_db``, ``ssim``, ``hfen`` (means over the series' slices), their gains over cubic
    (``*_gain``, ``*_low``, ``*_high``: 95 % circular block bootstrap intervals), the PSNR ``verdict`` against cubic,
    ``slices`` scored, and in ``attrs`` the measured ``shift_mm`` and ``residual_shift_mm``."""
    source = series.meta.get("source_path", "the other series")
    thickness = float(thickness_mm or series.meta.get("slice_thickness_mm") or series.spacing[0])
    cubic, inside = simulate_series(scan, series, thickness, profile, order=3)
    if inside.sum() < 1000:
        raise InputError(source, "hardly overlaps the scan: are they of one exam, in one frame of reference?")
    shift = phase_cross_correlation(series.data * inside, cubic * inside, upsample_factor=10)[0]
    methods = {name: simulate_series(scan, series, thickness, profile, order, shift)
               for name, order in INTERPOLATIONS.items()}
    for name, volume in (estimates or {}).items():
        methods[name] = simulate_series(volume, series, thickness, profile, 3, shift)
    inside = np.logical_and.reduce([m[1] for m in methods.values()])
    mask = foreground_mask(series) & inside
    residual = phase_cross_correlation(series.data * inside, methods[REFERENCE][0] * inside, upsample_factor=10)[0]
    voxel_mm = np.linalg.norm(series.affine[:3, :3], axis=0)
    shift_mm, residual_mm = shift * voxel_mm, residual * voxel_mm
    log(f"{source}: rigid shift between the series {np.round(shift_mm, 2).tolist()} mm (slice, row, column axes of "
        f"the series; residual after it {np.round(residual_mm, 2).tolist()} mm), corrected for every method")
    acquired = series.data.astype(np.float32)
    data_range = float(acquired[mask].max() - acquired[mask].min())
    scores = {name: slice_scores(series.with_data(rescaled(images, acquired, mask)), series.with_data(acquired),
                                 data_range, mask) for name, (images, _) in methods.items()}
    rows = []
    for name, table in scores.items():
        gains = table - scores[REFERENCE]
        row = {"method": name, **table.mean().to_dict(), "slices": len(table)}
        for column in ("psnr_db", "ssim", "hfen"):
            row[column + "_gain"], row[column + "_low"], row[column + "_high"], _ = bootstrap_interval(gains[column])
        row["verdict"] = "(the reference)" if name == REFERENCE else (
            f"PSNR {verdict(row['psnr_db_low'], row['psnr_db_high'])}, HFEN "
            f"{verdict(row['hfen_low'], row['hfen_high'], higher_is_better=False)}")
        rows.append(row)
    out = pd.DataFrame(rows).set_index("method")
    out.attrs.update(shift_mm=shift_mm.tolist(), residual_shift_mm=residual_mm.tolist(), thickness_mm=thickness)
    return out


def to_text(table: pd.DataFrame) -> str:
    """The table as `mrisr selfsr --validate-against` prints it."""
    lines = [f"{'method':<22} {'PSNR':>7} {'SSIM':>7} {'HFEN':>7}  {'PSNR gain vs cubic [95 % CI]':<30} "
             f"{'HFEN change [95 % CI]':<28} verdict"]
    for name, r in table.iterrows():
        lines.append(f"{name:<22} {r.psnr_db:7.2f} {r.ssim:7.4f} {r.hfen:7.4f}  "
                     f"{r.psnr_db_gain:+.3f} [{r.psnr_db_low:+.3f}, {r.psnr_db_high:+.3f}]{'':<6} "
                     f"{r.hfen_gain:+.4f} [{r.hfen_low:+.4f}, {r.hfen_high:+.4f}]  {r.verdict}")
    return "\n".join(lines)
