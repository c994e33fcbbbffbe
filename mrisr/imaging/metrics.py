"""Image quality scores: PSNR, SSIM, NRMSE, HFEN, on numpy arrays or batched torch tensors (CPU or GPU).

Every function compares ``pred`` with ``target`` over their last ``ndim`` axes (the image; 2 or 3 for SSIM and
HFEN) and returns one score per leading index: a float for a single numpy image, an array or a tensor (same device)
for a batch. ``ndim`` defaults to all axes of the input. ``pooled=True`` returns one score for the whole batch
instead (every voxel of every image counted once: the score of a volume scored slice by slice in 2D). A mask with extra
leading axes scores several regions from one computation (one score per region). ``data_range`` (max minus min of the
intensity scale that the images live on) is always explicit: guessing it from the data makes scores incomparable.
``mask`` (boolean, broadcastable to the images) restricts a score to a region, typically `foreground_mask`. Scores are
computed in float32 (float64 for float64 tensors); they agree with float64 references to about 1e-5.

PSNR and SSIM match ``skimage.metrics`` with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``
(Wang et al. 2004); NRMSE is skimage's ``normalized_root_mse`` (Euclidean normalisation).
"""

from __future__ import annotations

import numpy as np
import torch

from mrisr.imaging.filtering import gaussian_filter, gaussian_laplace
from mrisr.imaging.foreground import foreground_mask

__all__ = ["psnr", "ssim", "nrmse", "hfen", "gain_db", "foreground_mask", "fastai_metrics"]


def _prepare(pred, target, mask, ndim):
    is_numpy = not isinstance(pred, torch.Tensor)
    p = torch.from_numpy(np.asarray(pred, dtype=np.float32)) if is_numpy else pred
    t = torch.as_tensor(np.asarray(target, dtype=np.float32) if is_numpy else target, device=p.device)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    dtype = torch.promote_types(torch.promote_types(p.dtype, t.dtype), torch.float32)
    p, t = p.to(dtype), t.to(dtype)
    ndim = p.ndim if ndim is None else ndim
    if not 1 <= ndim <= p.ndim:
        raise ValueError(f"ndim={ndim} image axes requested from a {p.ndim}D input")
    if is_numpy and mask is not None:
        mask = np.require(mask, requirements="W")  # a read-only view (np.broadcast_to) is copied, never aliased
    m = None if mask is None else torch.as_tensor(mask, device=p.device)
    if m is not None:
        m = torch.broadcast_to(m.bool(), torch.broadcast_shapes(m.shape, p.shape))
    return p, t, m, ndim, is_numpy


def _reduced(p: torch.Tensor, ndim: int, pooled: bool) -> int:
    return p.ndim if pooled else ndim


def _mean(x: torch.Tensor, mask: torch.Tensor | None, ndim: int) -> torch.Tensor:
    """Mean over the last ``ndim`` axes of ``x`` (inside ``mask``, which may add leading axes: several regions)."""
    x = x if mask is None else torch.broadcast_to(x, mask.shape)
    dims = tuple(range(x.ndim - ndim, x.ndim))
    if mask is None:
        return x.mean(dims)
    count = mask.sum(dims)
    if (count == 0).any():
        raise ValueError("the mask is empty for at least one image")
    return (x * mask).sum(dims) / count


def _out(score: torch.Tensor, is_numpy: bool):
    if not is_numpy:
        return score
    score = score.numpy()
    return float(score) if score.ndim == 0 else score


def _check_range(data_range) -> None:
    if not np.all(np.asarray(data_range) > 0):
        raise ValueError(f"data_range must be > 0, got {data_range}")


def psnr(pred, target, data_range: float, mask=None, ndim: int | None = None, pooled: bool = False):
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``."""
    _check_range(data_range)
    p, t, m, ndim, is_numpy = _prepare(pred, target, mask, ndim)
    over = _reduced(p, ndim, pooled)
    mse = _mean((p - t) ** 2, m, over)
    return _out(10 * torch.log10(data_range**2 / mse), is_numpy)


def nrmse(pred, target, mask=None, ndim: int | None = None, pooled: bool = False):
    """Normalised root-mean-square error, ``||pred - target|| / ||target||`` (unitless; 0 is perfect)."""
    p, t, m, ndim, is_numpy = _prepare(pred, target, mask, ndim)
    over = _reduced(p, ndim, pooled)
    return _out(torch.sqrt(_mean((p - t) ** 2, m, over) / _mean(t**2, m, over)), is_numpy)


def ssim(pred, target, data_range: float, mask=None, ndim: int | None = None, pooled: bool = False,
         sigma: float = 1.5, truncate: float = 3.5, k1: float = 0.01, k2: float = 0.03):
    """Mean structural similarity (Wang et al. 2004) with a Gaussian window of ``sigma`` voxels, in 2D or 3D.

    Local statistics use an 11-tap Gaussian (radius ``int(truncate * sigma + 0.5)``); as in skimage, the SSIM map is
    averaged over the voxels at least a radius away from the border (and inside ``mask``).
    """
    _check_range(data_range)
    p, t, m, ndim, is_numpy = _prepare(pred, target, mask, ndim)
    over = _reduced(p, ndim, pooled)
    if ndim not in (2, 3):
        raise ValueError(f"ssim works on 2 or 3 image axes, not {ndim}")
    radius = int(truncate * sigma + 0.5)
    if min(p.shape[-ndim:]) <= 2 * radius:
        raise ValueError(f"ssim needs images larger than its {2 * radius + 1}-voxel window, got {tuple(p.shape)}")
    # Subtracting one common offset leaves every (co)variance unchanged and keeps float32 sums accurate.
    offset = t.mean()
    p, t = (p - offset) / data_range, (t - offset) / data_range
    stats = torch.stack([p, t, p * p, t * t, p * t])
    mu_p, mu_t, pp, tt, pt = gaussian_filter(stats, [sigma] * ndim, truncate, padding="valid")
    var_p, var_t, cov = pp - mu_p**2, tt - mu_t**2, pt - mu_p * mu_t
    mu_p, mu_t = mu_p + offset / data_range, mu_t + offset / data_range
    c1, c2 = k1**2, k2**2
    smap = (2 * mu_p * mu_t + c1) * (2 * cov + c2) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    if m is not None:
        m = m[(...,) + (slice(radius, -radius),) * ndim]
    return _out(_mean(smap, m, over), is_numpy)


def hfen(pred, target, mask=None, ndim: int | None = None, pooled: bool = False, sigma: float = 1.5,
         radius: int = 7):
    """High-frequency error norm (Ravishankar and Bresler 2011): ``||LoG(pred - target)|| / ||LoG(target)||``.

    LoG is the Laplacian of a Gaussian of ``sigma`` voxels, here 15 taps per axis as in the paper (2D or 3D), with
    mirrored borders. Sensitive to edges and fine texture that PSNR averages away; 0 is perfect.
    """
    p, t, m, ndim, is_numpy = _prepare(pred, target, mask, ndim)
    over = _reduced(p, ndim, pooled)
    if ndim not in (2, 3):
        raise ValueError(f"hfen works on 2 or 3 image axes, not {ndim}")
    log_err, log_t = gaussian_laplace(torch.stack([p - t, t]), sigma, ndim, radius)
    return _out(torch.sqrt(_mean(log_err**2, m, over) / _mean(log_t**2, m, over)), is_numpy)


def gain_db(pred: torch.Tensor, inputs: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of ``pred`` minus PSNR of the network's own input, per sample (dB): what the network adds to doing
    nothing. Tensors are ``(batch, 1, *spatial)``; an input on a coarser grid (``scale > 1``) is first brought to the
    target's grid by linear interpolation (``align_corners=False``, the cell-centred grid of
    `mrisr.physics.degrade`)."""
    pred, inputs, target = pred.float(), inputs.float(), target.float()
    ndim = target.ndim - 2
    if inputs.shape[2:] != target.shape[2:]:
        inputs = torch.nn.functional.interpolate(inputs, size=target.shape[2:], align_corners=False,
                                                 mode="bilinear" if ndim == 2 else "trilinear")
    return psnr(pred, target, data_range, ndim=ndim + 1) - psnr(inputs, target, data_range, ndim=ndim + 1)


def fastai_metrics(data_range: float = 1.0) -> list:
    """PSNR, SSIM and HFEN as fastai metrics for ``(batch, 1, *spatial)`` predictions (2D or 3D), averaged over the
    batch. ``data_range`` is that of the normalised training intensities."""
    from fastai.metrics import AvgMetric

    def _named(name, fn):
        def metric(pred, targ):
            return fn(pred.float(), targ.float(), ndim=pred.ndim - 2).mean()
        metric.__name__ = name
        return AvgMetric(metric)

    return [_named("psnr", lambda p, t, ndim: psnr(p, t, data_range, ndim=ndim)),
            _named("ssim", lambda p, t, ndim: ssim(p, t, data_range, ndim=ndim)),
            _named("hfen", hfen)]
