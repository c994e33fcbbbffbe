"""How noisy a scan is: the thermal noise level of a magnitude image, measured in its background.

In air a magnitude image holds only noise: the modulus of complex Gaussian noise of standard deviation ``sigma`` per
channel, a Rayleigh distribution for one receive channel (Henkelman, Med. Phys. 1985; Gudbjartsson and Patz, MRM
1995) and a chi distribution of ``2 L`` degrees of freedom for ``L`` channels combined by root-sum-of-squares
(Constantinides et al., MRM 1997; with correlated coils ``L`` is an effective number, Aja-Fernandez et al., MRI
2009). `noise_sigma` takes the background as the voxels well outside the subject's foreground mask, fits ``L`` to
the shape of their distribution (10th and 90th percentiles relative to the median) and reads ``sigma`` from their
median, which ghosts and the odd bright artefact in air barely move. Air that does not look like noise (blanked by
the scanner, a defacing tool or an intensity rescaling that clipped it, or holding signal) is an error: the SNR must
then be given. On the 8-channel DESS sample the air fits about 5 effective channels.

Where the scanner interpolated the image (zero-filled k-space, as on the DESS sample: neighbouring voxels of its air
correlate by 0.9), the air's noise is not white; ``sigma`` is then its per-voxel level, with less power at the
highest frequencies and more in the measured band than white noise of that level. `snr` is the mean foreground
signal over ``sigma``: the figure `mrisr.physics.steps.RicianNoise` takes."""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy import ndimage, stats

from mrisr.errors import InputError
from mrisr.imaging.foreground import foreground_mask, tissue_threshold
from mrisr.volume import Volume

MIN_BACKGROUND = 500  # voxels of air needed for a reading (its median then within about 5 %)
MAX_COILS = 32  # the most receive channels the air's shape is fitted with
MAX_SHAPE_ERROR = 0.15  # the most the air's percentile ratios may be off the fitted chi distribution's (log)


def _as_volume(scan) -> Volume:
    if isinstance(scan, Volume):
        return scan
    data = np.asarray(scan, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        data = data.reshape(-1, *data.shape[-2:])  # batches and frames: a stack of images
    return Volume.from_spacing(data)


def background(scan: Volume | np.ndarray, margin_mm: float = 3.0) -> np.ndarray:
    """The voxel values of ``scan``'s air (1D, the scan's units): outside its `foreground_mask` dilated by
    ``margin_mm`` (voxel units per axis from the spacing; 1 mm voxels for an array). A time series pools every
    frame's air."""
    volume = _as_volume(scan)
    mask = foreground_mask(volume)
    radius = [max(1, round(margin_mm / s)) for s in volume.spacing]
    size = [2 * r + 1 for r in radius]
    air = ~ndimage.maximum_filter(mask, size)
    data = volume.data if volume.data.ndim == 4 else volume.data[None]
    return data[:, air].ravel()


@functools.cache
def _chi_quantiles(coils: int) -> np.ndarray:
    """The 10th, 50th and 90th percentiles of the magnitude of ``coils`` combined channels of unit noise (a chi
    distribution of ``2 coils`` degrees of freedom; Rayleigh for one coil)."""
    return stats.chi(2 * coils).ppf([0.1, 0.5, 0.9])


COILS = np.arange(1, MAX_COILS + 1)


@functools.cache
def _shapes() -> np.ndarray:
    """``(MAX_COILS, 2)``: log(q10 / q50) and log(q90 / q50) of each chi distribution (computed once, when first
    needed: not at import)."""
    return np.log(np.array([q / q[1] for q in map(_chi_quantiles, COILS)])[:, [0, 2]])


def air_model(scan: Volume | np.ndarray, margin_mm: float = 3.0) -> dict:
    """The noise in ``scan``'s air (module docstring), as ``{"sigma", "coils", "zeros_percent", "shape_error"}``:
    the noise standard deviation per channel (the scan's units), the effective number of combined receive channels
    (the chi distribution whose 10th and 90th percentiles, relative to the median, fit the air's best), the share of
    exact zeros, and the misfit of that shape (the larger of the two log-ratio errors)."""
    values = background(scan, margin_mm).astype(np.float64)
    source = scan.meta.get("source_path") if isinstance(scan, Volume) else None
    if len(values) < MIN_BACKGROUND:
        raise InputError(source, f"only {len(values)} voxels of air beside the subject (at least {MIN_BACKGROUND} "
                                 "are needed to measure its noise); give the SNR explicitly (RicianNoise(snr=...))")
    integer = bool(np.all(values == np.round(values)))
    zeros = 100 * float(np.mean(values == 0))
    if zeros > 50:
        raise InputError(source, f"{zeros:.0f} % of the air beside the subject is 0 (blanked), so its noise cannot "
                                 "be measured; give the SNR explicitly (RicianNoise(snr=...))")
    if integer:  # a value k stands for [k - 0.5, k + 0.5), 0 for [0, 0.5): magnitudes are never negative
        jitter = np.random.default_rng(0).uniform(-0.5, 0.5, len(values))
        values = values + np.where(values == 0, (jitter + 0.5) / 2, jitter)
    q10, q50, q90 = np.percentile(values, [10, 50, 90])
    misfit = np.abs(_shapes() - np.log([q10 / q50, q90 / q50])).max(1)
    best = int(np.argmin(misfit))
    sigma = float(q50 / _chi_quantiles(int(COILS[best]))[1])
    return {"sigma": sigma, "coils": int(COILS[best]), "zeros_percent": zeros, "shape_error": float(misfit[best]),
            "integer": integer}


def noise_sigma(scan: Volume | np.ndarray, margin_mm: float = 3.0) -> float:
    """The noise standard deviation per receive channel of a magnitude scan (its units): in tissue, where the
    signal is well above the noise, the standard deviation of its noise.

    ``scan``: a `Volume` (a time series pools its frames) or an array (2D image, 3D volume, or a stack). The air is
    read as the magnitude of one channel (Rayleigh) or of several combined (root-sum-of-squares: a chi distribution
    of twice as many degrees of freedom, Constantinides et al., MRM 1997), the effective number of channels fitted
    from its shape (`air_model`). Integer pixel values (rounded by the scanner) are spread over their rounding
    interval first. Raises an `InputError` naming the scan when fewer than 500 voxels of air are left (an image
    cropped to the subject), when its air is mostly 0 (blanked), when no chi distribution fits its shape within 15 %
    (air holding signal or artefacts), or when the noise is below half an integer step: there is then no noise to
    read, and the SNR must be given to `mrisr.physics.steps.RicianNoise` instead.
    """
    model = air_model(scan, margin_mm)
    source = scan.meta.get("source_path") if isinstance(scan, Volume) else None
    if model["shape_error"] > MAX_SHAPE_ERROR or (model["integer"] and model["sigma"] < 0.5):
        raise InputError(source, f"the air beside the subject does not look like noise ({model['zeros_percent']:.0f} "
                                 f"% zeros, its percentiles {100 * model['shape_error']:.0f} % off the best chi "
                                 "distribution, of "
                                 f"{model['coils']} channel(s)): blanked or holding signal, so its noise cannot be "
                                 "measured; give the SNR explicitly (RicianNoise(snr=...))")
    return model["sigma"]


NOISE_KEY = "noise_sigma"  # Volume.meta: the scan's own noise level, measured on the whole scan (or known)


def scan_noise_sigma(volume: Volume) -> float:
    """The noise level of the scan ``volume`` comes from: ``volume.meta["noise_sigma"]`` where it was measured on
    the whole scan before it was cut into slabs or crops (`with_noise_sigma`; a crop has less air, or none), else
    `noise_sigma` of the volume itself."""
    known = volume.meta.get(NOISE_KEY)
    return float(known) if known is not None else noise_sigma(volume)


def with_noise_sigma(volume: Volume, sigma: float | None = None) -> Volume:
    """``volume`` with its noise level (`noise_sigma` of it, or ``sigma`` where known) recorded in its metadata,
    so that slabs and crops cut from it later carry the level of the whole scan."""
    return volume.with_data(volume.data, **{NOISE_KEY: float(noise_sigma(volume) if sigma is None else sigma)})


def signal_level(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """The mean signal of each image's tissue (voxels above its `tissue_threshold`), shape ``x.shape[:-ndim]``."""
    threshold = tissue_threshold(x, ndim)
    above = x > threshold.view(*threshold.shape, *[1] * ndim)
    dims = tuple(range(x.ndim - ndim, x.ndim))
    return (x * above).sum(dims) / above.sum(dims).clamp_min(1)


def snr(scan: Volume | np.ndarray, margin_mm: float = 3.0) -> float:
    """Signal-to-noise ratio of ``scan``: its mean tissue signal (`signal_level` of the whole scan) over
    `noise_sigma`; the definition `mrisr.physics.steps.RicianNoise` uses."""
    volume = _as_volume(scan)
    data = torch.from_numpy(np.ascontiguousarray(volume.data, np.float32)).reshape(-1)
    return float(signal_level(data, 1)) / noise_sigma(scan, margin_mm)
