"""Classical baselines: what any super-resolution result must beat, computed from the same degraded input.

* **Interpolation** (`baselines`): the low-resolution `Volume` resampled onto the high-resolution grid through the
  two volumes' affines (so the voxel alignment set by the degradation is respected exactly) with a B-spline of order
  0 (nearest), 1 (linear) or 3 (cubic, ``scipy.ndimage``). When the degradation kept the grid (k-space zero-filling,
  blur), the degraded input is already on the high-resolution grid and is itself the baseline.
* **Interpolation + data consistency** (`mrisr.physics.consistency.enforce`: k-space projection or iterative
  back-projection, Irani and Peleg 1991), its stopping rule and iterations chosen on validation data.
* **TV-POCS** (`tv_reconstruction`): total-variation-regularised reconstruction from the measurement, alternating a
  back-projection step towards the measured data with TV denoising (Chambolle, JMIV 2004): proximal gradient
  descent on ``1/2 ||A(x) - lr||^2 + lambda TV(x)``, the compressed-sensing style reconstruction of Lustig et al.
  (MRM 2007) for a fully sampled central band.
* **Wiener deconvolution** (`wiener_deconvolution`), where the degradation ends in a Gaussian blur:
  scikit-image's Wiener-Hunt deconvolution of the blur (Laplacian regulariser), then interpolation where the grid
  is coarser.

Their settings are fitted on validation cases only, through one function (`fit_baselines`), and `classical`
computes them all for one test input.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from skimage.restoration import denoise_tv_chambolle, wiener

from mrisr.imaging import metrics
from mrisr.imaging.foreground import foreground_mask
from mrisr.physics.consistency import back_projection, enforce, operator_norm_squared
from mrisr.physics.degrade import Degradation, GaussianBlur, KSpaceTruncation
from mrisr.volume import Volume, intensity_scale

SPLINE_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}
SAME_GRID = "degraded input"
TV_LABEL, WIENER_LABEL, DC_SUFFIX = "TV-POCS", "Wiener", "+DC"

# What `fit_baselines` tries on the validation cases: data-consistency settings (`enforce` keywords: the noise-aware
# projection or back-projection stopped at the noise, or noise-blind: the exact projection, or a fixed number of
# back-projection iterations), TV weights (relative to the image's intensity scale) and outer iterations, and Wiener
# balances.
DC_CANDIDATES = {"kspace": ({"noise_sigma": "recorded"}, {"noise_sigma": None}),
                 "back_projection": ({"noise_sigma": "recorded", "iterations": 400},
                                     {"noise_sigma": None, "iterations": 5}, {"noise_sigma": None, "iterations": 20},
                                     {"noise_sigma": None, "iterations": 100},
                                     {"noise_sigma": None, "iterations": 400})}
TV_WEIGHTS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
TV_ITERATIONS = (10,)
WIENER_BALANCES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


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


def same_grid(lr: Volume, grid: Volume) -> bool:
    return lr.shape == grid.shape and np.allclose(lr.affine, grid.affine, atol=1e-6)


def baselines(lr: Volume, grid: Volume) -> dict[str, Volume]:
    """The interpolation baselines for ``lr`` on ``grid``: ``{"nearest", "linear", "cubic"}`` or, when ``lr`` is
    already on that grid, ``{"degraded input": lr}``."""
    if same_grid(lr, grid):
        return {SAME_GRID: lr}
    return {name: resample(lr, grid, order) for name, order in SPLINE_ORDERS.items()}


def starting_point(lr: Volume, grid: Volume) -> Volume:
    """Where the iterative baselines start: the degraded input on its own grid, else its cubic interpolation."""
    return lr if same_grid(lr, grid) else resample(lr, grid, SPLINE_ORDERS["cubic"])


# -- TV-POCS ---------------------------------------------------------------------------------------------------------

def tv_reconstruction(lr: Volume, grid: Volume, degradation: Degradation, weight: float = 0.02,
                      iterations: int = 10) -> Volume:
    """TV-regularised reconstruction of ``lr`` on ``grid`` (module docstring): from `starting_point`, ``iterations``
    times a back-projection step (``x + A^T (lr - A(x)) / ||A||^2``: for a k-space truncation, the measured band put
    back) and then ``skimage.restoration.denoise_tv_chambolle`` with ``weight`` times the image's intensity scale
    (`intensity_scale`; unitless, larger is smoother), over the degradation's image axes (slice by slice in 2D)."""
    x0 = starting_point(lr, grid)
    forward = degradation.forward_model()
    spacing, pe = degradation.volume_axes(x0)
    scale = intensity_scale(x0.data)
    x = torch.from_numpy(np.ascontiguousarray(x0.data, np.float32)) / scale
    y = torch.from_numpy(np.ascontiguousarray(lr.data, np.float32)) / scale
    step_size = 1.0 / operator_norm_squared(forward, x, spacing, pe)  # what each back_projection would estimate again
    for _ in range(iterations):
        x, _ = back_projection(x, y, forward, spacing, pe, iterations=1, step_size=step_size)
        images = x.numpy().reshape(-1, *x.shape[-degradation.ndim:])
        x = torch.from_numpy(np.stack([denoise_tv_chambolle(image, weight=weight) for image in images])
                             .reshape(x.shape).astype(np.float32))
    return x0.with_data(x.numpy() * scale, baseline={"method": TV_LABEL, "weight": weight, "iterations": iterations})


# -- Wiener deconvolution --------------------------------------------------------------------------------------------

def final_blurs(degradation: Degradation) -> list[GaussianBlur]:
    """The Gaussian blurs at the end of the deterministic chain (after every change of grid): the blurs that act on
    the low-resolution image's own grid, which a deconvolution of that image can undo."""
    blurs = []
    for step in reversed(degradation.forward_model().steps):
        if not isinstance(step, GaussianBlur):
            break
        blurs.append(step)
    return blurs


def _psf(blurs: list[GaussianBlur], degradation: Degradation, volume: Volume) -> np.ndarray:
    """The combined point-spread function of ``blurs`` on ``volume``'s grid, over the degradation's image axes."""
    delta = np.zeros([33] * degradation.ndim, np.float32)
    delta[(16,) * degradation.ndim] = 1.0
    spacing, pe = degradation.volume_axes(volume)
    psf = Degradation(list(reversed(blurs)), degradation.ndim)(delta, spacing=spacing, phase_encoding_axes=pe)
    return psf / psf.sum()


def wiener_deconvolution(lr: Volume, grid: Volume, degradation: Degradation, balance: float = 0.03) -> Volume:
    """Undo the degradation's final Gaussian blurs (`final_blurs`) on ``lr``'s grid with
    ``skimage.restoration.wiener`` (``balance``: the weight of its Laplacian regulariser; larger is smoother), the
    borders mirrored over the kernel's reach, then interpolate onto ``grid`` (cubic) where it is finer."""
    blurs = final_blurs(degradation)
    if not blurs:
        raise ValueError(f"{degradation.name}: no Gaussian blur ends the degradation; a Wiener deconvolution "
                         "needs one")
    psf = _psf(blurs, degradation, lr)
    pad = [(0, 0)] * (3 - degradation.ndim) + [(16, 16)] * degradation.ndim
    scale = intensity_scale(lr.data)
    frames = []
    for frame in lr.frames():
        padded = np.pad(frame.data / scale, pad, mode="symmetric")
        images = padded.reshape(-1, *padded.shape[-degradation.ndim:])
        out = np.stack([wiener(image, psf, balance, clip=False) for image in images]).reshape(padded.shape)
        frames.append(out[tuple(slice(p, out.shape[k] - q) for k, (p, q) in enumerate(pad))] * scale)
    deblurred = lr.with_data((frames[0] if lr.data.ndim == 3 else np.stack(frames)).astype(np.float32))
    out = starting_point(deblurred, grid)
    return out.with_data(out.data, baseline={"method": WIENER_LABEL, "balance": balance})


# -- fitted on validation, applied to a test input ----------------------------------------------------------------

def classical(lr: Volume, grid: Volume, degradation: Degradation, settings: dict) -> dict[str, Volume]:
    """Every classical baseline for one input ``lr`` (degraded onto ``grid``'s reference), with ``settings`` from
    `fit_baselines`: the interpolations (`baselines`), the cubic one (or the input) made data-consistent
    (``"<name>+DC"``), TV-POCS and, where the degradation ends in a blur, Wiener deconvolution."""
    methods = baselines(lr, grid)
    start = SAME_GRID if SAME_GRID in methods else "cubic"  # the interpolation the iterative baselines start from
    methods[start + DC_SUFFIX] = enforce(methods[start], lr, degradation, **settings["dc"])
    methods[TV_LABEL] = tv_reconstruction(lr, grid, degradation, **settings["tv"])
    if settings.get("wiener") is not None:
        methods[WIENER_LABEL] = wiener_deconvolution(lr, grid, degradation, **settings["wiener"])
    return methods


def _psnr(volume: Volume, hr: Volume, mask: np.ndarray) -> float:
    """Foreground PSNR (dB) as `mrisr.evaluation.tables.score_table` computes it: the reference's range, pooled."""
    return float(metrics.psnr(volume.data, hr.data, float(hr.data.max() - hr.data.min()),
                              np.broadcast_to(mask, hr.data.shape), 3, pooled=True))


def _best(make: Callable[[Volume, Volume, dict], Volume], candidates, inputs: dict, log,
          ordered: bool = False) -> dict:
    """The candidate whose output has the best mean foreground PSNR over the validation ``inputs`` (name ->
    ``(reference, degraded input, foreground mask)``; PSNR as `mrisr.evaluation.tables.score_table` computes it). For an
    ``ordered`` grid (one setting, rising), a best at either end is a warning: the grid may be too narrow."""
    scores = []
    for candidate in candidates:
        psnr = [_psnr(make(lr, hr, candidate), hr, mask) for hr, lr, mask in inputs.values()]
        scores.append(float(np.mean(psnr)))
        log(f"  {candidate}: validation PSNR {scores[-1]:.3f} dB")
    best = int(np.argmax(scores))
    if ordered and best in (0, len(candidates) - 1):
        warnings.warn(f"the best baseline setting on validation, {candidates[best]}, is at the edge of the grid "
                      "tried; a wider grid may do better", stacklevel=2)
    return dict(candidates[best])


def fit_baselines(valid: dict[str, Volume], degradation: Degradation, seed: int = 0, log=lambda line: None,
                  quick: bool = False) -> dict:
    """The settings of every iterative baseline, chosen on the validation cases ``valid`` (name -> reference
    `Volume`, degraded here with ``seed``) by their mean foreground PSNR: data consistency (`DC_CANDIDATES` of its
    kind), TV-POCS (`TV_WEIGHTS` x `TV_ITERATIONS`) and Wiener (`WIENER_BALANCES`, where the degradation ends in a
    blur). Never give it a test case. ``log`` gets one line per candidate.

    Returns the settings `classical` takes, with ``"validation_psnr_db"`` (every classical method's mean validation
    PSNR) and ``"best"``: the one a network must beat (chosen here, never on the test cases)."""
    inputs = {name: (hr, degradation(hr, seed=seed), foreground_mask(hr)) for name, hr in valid.items()}
    forward = degradation.forward_model().steps
    kind = "kspace" if len(forward) == 1 and isinstance(forward[0], KSpaceTruncation) else "back_projection"
    dc_grid = [{**DC_CANDIDATES[kind][0], "iterations": 20}] if quick else DC_CANDIDATES[kind]
    tv_grid = ([{"weight": TV_WEIGHTS[len(TV_WEIGHTS) // 2], "iterations": 3}] if quick else
               [{"weight": w, "iterations": k} for w, k in itertools.product(TV_WEIGHTS, TV_ITERATIONS)])
    wiener_grid = [{"balance": b} for b in (WIENER_BALANCES[len(WIENER_BALANCES) // 2:][:1] if quick
                                             else WIENER_BALANCES)]
    log("data consistency of the interpolation")
    dc = _best(lambda lr, hr, c: enforce(starting_point(lr, hr), lr, degradation, **c), dc_grid, inputs, log)
    if len(dc_grid) > 2 and dc == dc_grid[-1]:
        warnings.warn(f"the best data consistency on validation, {dc}, is the most iterations tried; more may do "
                      "better", stacklevel=2)
    log("TV-POCS")
    tv = _best(lambda lr, hr, c: tv_reconstruction(lr, hr, degradation, **c), tv_grid, inputs, log,
               ordered=len(TV_ITERATIONS) == 1 and not quick)
    wiener = None
    if final_blurs(degradation):
        log("Wiener")
        wiener = _best(lambda lr, hr, c: wiener_deconvolution(lr, hr, degradation, **c), wiener_grid, inputs, log,
                       ordered=not quick)
    settings = {"dc": dc, "tv": tv, "wiener": wiener, "fitted_on": sorted(valid), "seed": seed}
    psnr = {}
    for hr, lr, mask in inputs.values():
        for name, volume in classical(lr, hr, degradation, settings).items():
            psnr.setdefault(name, []).append(_psnr(volume, hr, mask))
    settings["validation_psnr_db"] = {name: float(np.mean(values)) for name, values in psnr.items()}
    settings["best"] = max(settings["validation_psnr_db"], key=settings["validation_psnr_db"].get)
    log(f"best classical baseline on validation: {settings['best']}")
    return settings
