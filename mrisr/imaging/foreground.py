"""Where the subject is: Otsu thresholds (batched, torch) and a cleaned-up foreground mask for scoring volumes."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from mrisr.volume import Volume


def otsu_threshold(x: torch.Tensor, ndim: int, bins: int = 256) -> torch.Tensor:
    """Otsu's threshold (Otsu 1979) of each image in a batch: ``x`` is ``(..., *spatial)`` with ``ndim`` image axes.

    Returns shape ``x.shape[:-ndim]``, in the units of ``x``. A 256-bin histogram over each image's range, the
    threshold at the centre of the bin that maximises the between-class variance, as ``skimage.filters.threshold_otsu``
    (tests check it against that). Ours because it runs batched on the GPU and scikit-image is no runtime dependency.
    """
    flat = x.reshape(-1, int(np.prod(x.shape[-ndim:]))).float()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    width = (hi - lo).clamp_min(torch.finfo(flat.dtype).tiny) / bins
    index = ((flat - lo) / width).long().clamp_(0, bins - 1)
    counts = torch.zeros(flat.shape[0], bins, device=x.device).scatter_add_(1, index, torch.ones_like(flat))
    centres = lo + width * (torch.arange(bins, device=x.device) + 0.5)
    weight_low = counts.cumsum(1)
    weight_high = counts.flip(1).cumsum(1).flip(1)
    mean_low = (counts * centres).cumsum(1) / weight_low.clamp_min(1)
    mean_high = (counts * centres).flip(1).cumsum(1).flip(1) / weight_high.clamp_min(1)
    between = weight_low[:, :-1] * weight_high[:, 1:] * (mean_low[:, :-1] - mean_high[:, 1:]) ** 2
    best = between.argmax(1, keepdim=True)
    return centres.gather(1, best).reshape(x.shape[:-ndim]).to(x.dtype)


def tissue_threshold(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Intensity separating tissue from air in each image of a batch (shape ``x.shape[:-ndim]``).

    Otsu's threshold on log intensity: air (a Rayleigh noise floor) and tissue differ by an order of magnitude, and
    on a log scale the two histogram modes are comparably wide, so the threshold falls in the valley between them
    instead of splitting bright from dark tissue (as plain Otsu does on, say, a DESS knee).
    """
    dims = tuple(range(x.ndim - ndim, x.ndim))
    lowest = x.amin(dims, keepdim=True)
    log_threshold = otsu_threshold(torch.log1p(x - lowest), ndim)
    return torch.expm1(log_threshold) + lowest.reshape(log_threshold.shape)


def foreground_mask(volume: Volume | np.ndarray, closing_mm: float = 2.0) -> np.ndarray:
    """Boolean mask ``(S, R, C)`` of the subject (tissue, not air), so that scores are not dominated by background.

    A time series ``(T, S, R, C)`` gets the mask of its time average.

    `tissue_threshold` on a lightly smoothed copy, then: the largest connected component, a morphological closing
    of about ``closing_mm`` (in voxels along each axis from the spacing; 1 mm voxels for a bare array), and holes filled
    slice by slice (dark tissue inside the subject, such as cortical bone or a tendon, counts as subject).
    """
    data = np.asarray(volume.data if isinstance(volume, Volume) else volume, dtype=np.float32)
    spacing = volume.spacing if isinstance(volume, Volume) else (1.0,) * 3
    if isinstance(volume, Volume) and data.ndim == 4:
        data = data.mean(0)
    if data.ndim != 3:
        raise ValueError(f"foreground_mask takes a 3D (S, R, C) volume or a time series of them, got {data.shape}")
    smooth = ndimage.gaussian_filter(data, sigma=[0.5 / s for s in spacing])
    mask = smooth > float(tissue_threshold(torch.from_numpy(smooth), 3))
    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    radius = [max(1, round(closing_mm / s)) for s in spacing]
    size = [2 * r + 1 for r in radius]  # a box: max/min filters run axis by axis, fast on big volumes
    padded = np.pad(mask.astype(np.uint8), [(r, r) for r in radius])
    closed = ndimage.minimum_filter(ndimage.maximum_filter(padded, size), size)
    mask = closed[tuple(slice(r, -r) for r in radius)].astype(bool)
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])
