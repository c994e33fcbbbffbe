"""Separable filtering of batched torch tensors along their last spatial axes (the degradation and metric kernels).

Tensors are ``(..., *spatial)``: the last ``ndim`` axes are image axes, everything before them is batch. Kernels are
sampled exactly as ``scipy.ndimage.gaussian_filter1d`` samples them, and ``"symmetric"`` padding is scipy's
``mode="reflect"`` (the edge voxel repeated: ``d c b a | a b c d | d c b a``), so results match scipy's filters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, radius: int, order: int = 0) -> np.ndarray:
    """Sampled Gaussian of width ``sigma`` voxels over ``[-radius, radius]`` (order 0), or its 2nd derivative (order 2).

    Order 0 sums to one. Order 2 is ``g(x) (x^2 - sigma^2) / sigma^4`` with the normalised ``g`` of order 0, as in
    ``scipy.ndimage`` (so ``gaussian_laplace`` is the sum over axes of order-2 filtering along one axis).
    """
    if order not in (0, 2):
        raise ValueError(f"order must be 0 or 2, got {order}")
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    return g if order == 0 else g * (x**2 - sigma**2) / sigma**4


def symmetric_pad_index(length: int, before: int, after: int) -> torch.Tensor:
    """Indices into ``range(length)`` that pad it by mirroring with the edge repeated (any pad width)."""
    idx = np.arange(-before, length + after) % (2 * length)
    return torch.from_numpy(np.where(idx >= length, 2 * length - 1 - idx, idx))


def filter_axis(x: torch.Tensor, kernel: np.ndarray | torch.Tensor, dim: int,
                padding: str = "symmetric") -> torch.Tensor:
    """Correlate ``x`` with a 1D odd-length ``kernel`` along ``dim``.

    ``padding="symmetric"`` keeps the length (scipy's ``mode="reflect"``); ``"valid"`` returns only the positions
    where the kernel fits inside, ``len(kernel) - 1`` fewer.
    """
    kernel = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
    radius = (kernel.numel() - 1) // 2
    moved = x.movedim(dim, -1)
    length = moved.shape[-1]
    lines = moved.reshape(-1, 1, length)
    if padding == "symmetric":
        lines = lines.index_select(-1, symmetric_pad_index(length, radius, radius).to(x.device))
    elif padding != "valid":
        raise ValueError(f"padding must be 'symmetric' or 'valid', got {padding!r}")
    out = F.conv1d(lines, kernel.view(1, 1, -1))
    return out.reshape(*moved.shape[:-1], out.shape[-1]).movedim(-1, dim)


def separable_filter(x: torch.Tensor, kernels: Sequence[np.ndarray | None], padding: str = "symmetric") -> torch.Tensor:
    """Filter the last ``len(kernels)`` axes of ``x``, one 1D kernel per axis (``None`` leaves that axis alone)."""
    ndim = len(kernels)
    for axis, kernel in enumerate(kernels):
        if kernel is not None:
            x = filter_axis(x, kernel, x.ndim - ndim + axis, padding)
    return x


def gaussian_filter(x: torch.Tensor, sigma: Sequence[float], truncate: float = 4.0,
                    padding: str = "symmetric") -> torch.Tensor:
    """Gaussian smoothing of the last ``len(sigma)`` axes; ``sigma`` in voxels per axis, 0 skips an axis.

    The kernel radius is ``int(truncate * sigma + 0.5)``, as in ``scipy.ndimage.gaussian_filter``.
    """
    return separable_filter(
        x, [gaussian_kernel1d(s, int(truncate * s + 0.5)) if s > 0 else None for s in sigma], padding)


def gaussian_laplace(x: torch.Tensor, sigma: float, ndim: int, radius: int, padding: str = "symmetric") -> torch.Tensor:
    """Laplacian of Gaussian over the last ``ndim`` axes (``scipy.ndimage.gaussian_laplace`` with this radius)."""
    smooth, second = gaussian_kernel1d(sigma, radius), gaussian_kernel1d(sigma, radius, order=2)
    return sum(separable_filter(x, [second if a == b else smooth for b in range(ndim)], padding) for a in range(ndim))
