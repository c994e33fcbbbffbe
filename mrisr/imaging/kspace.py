"""Centred discrete Fourier transforms between image space and k-space.

"Centred" means k-space index ``n // 2`` is the zero frequency and image index ``n // 2`` is the centre of the
field of view, the convention of MR raw data (ISMRMRD, fastMRI). Unitary ("ortho") scaling, so energy is the same in
both domains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ifftc(kspace: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Centred inverse FFT along ``axes``: k-space -> image."""
    axes = tuple(axes)
    shifted = np.fft.ifftshift(kspace, axes=axes)
    return np.fft.fftshift(np.fft.ifftn(shifted, axes=axes, norm="ortho"), axes=axes)


def fftc(image: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Centred forward FFT along ``axes``: image -> k-space."""
    axes = tuple(axes)
    shifted = np.fft.ifftshift(image, axes=axes)
    return np.fft.fftshift(np.fft.fftn(shifted, axes=axes, norm="ortho"), axes=axes)


def center_crop(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Keep the central ``size`` samples along ``axis``; centre index ``n // 2`` stays the centre."""
    n = array.shape[axis]
    if size > n:
        raise ValueError(f"cannot crop {n} samples to {size}")
    start = n // 2 - size // 2
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, start + size)
    return array[tuple(index)]


def rss(coil_images: np.ndarray, axis: int) -> np.ndarray:
    """Root-sum-of-squares coil combination along ``axis`` (magnitude image, float32)."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=axis)).astype(np.float32)
