"""Checkerboard artefacts, measured where they live: at the upsampling grid's frequencies in the residual spectrum.

An x``s`` upsampler whose output pixels depend on their position within each ``s x s`` cell (a transposed conv with
uneven kernel overlap, Odena et al., Distill 2016) adds a pattern that repeats every ``s`` pixels. In the spectrum of
the residual (prediction minus reference) such a pattern is a set of sharp peaks at ``k / s`` cycles per pixel
(``k = 1 .. s-1``) along each image axis; an artefact-free residual has a smooth spectrum there.
"""

from __future__ import annotations

import numpy as np


def residual_spectrum(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean power spectrum of ``pred - target`` over images ``(..., H, W)``, zero frequency at the centre
    (``fftshift``), in squared intensity units per pixel. The residual's mean is removed from each image."""
    residual = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    residual = residual.reshape(-1, *residual.shape[-2:])
    residual = residual - residual.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(residual)) ** 2 / residual[0].size
    return np.fft.fftshift(power.mean(axis=0))


def checkerboard_index(pred: np.ndarray, target: np.ndarray, scale: int, ring: int = 2) -> float:
    """Periodic-artefact strength of an x``scale`` result, in dB: the mean residual power at the upsampling grid's
    frequencies (every ``(k_y / scale, k_x / scale)`` cycles per pixel but zero) over the mean power of the
    surrounding frequencies (within ``ring`` bins, peaks excluded). About 0 dB: no periodic pattern; a
    checkerboard gives tens of dB. Images ``(..., H, W)``, ``H`` and ``W`` multiples of ``scale``."""
    spectrum = residual_spectrum(pred, target)
    h, w = spectrum.shape
    if h % scale or w % scale:
        raise ValueError(f"image size {h} x {w} is not a multiple of the scale {scale}")
    centre = np.array([h // 2, w // 2])
    peaks = [centre + [ky * h // scale, kx * w // scale] for ky in range(-(scale // 2), scale - scale // 2)
             for kx in range(-(scale // 2), scale - scale // 2) if (ky, kx) != (0, 0)]
    peaks = [(y % h, x % w) for y, x in peaks]
    is_peak = np.zeros_like(spectrum, bool)
    for y, x in peaks:
        is_peak[y, x] = True
    around = np.zeros_like(is_peak)
    for y, x in peaks:
        ys, xs = np.arange(y - ring, y + ring + 1) % h, np.arange(x - ring, x + ring + 1) % w
        around[np.ix_(ys, xs)] = True
    around &= ~is_peak
    around[centre[0], centre[1]] = False
    peak_power = np.mean([spectrum[y, x] for y, x in peaks])
    return float(10 * np.log10(peak_power / spectrum[around].mean()))
