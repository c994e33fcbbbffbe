"""Whole-volume inference: a trained network applied to a scan of any size, tile by tile.

`predict_volume` cuts the (normalised) input into overlapping tiles, runs them through the network in batches, and
blends the results into one output on the CPU. Each tile carries a *halo*: ``halo`` input voxels of context on every
side whose output is thrown away. With a halo at least the network's receptive-field radius (the default), every kept
voxel is exactly what one pass of the network over the whole volume would give, whatever the tile size; smaller
halos are faster and approximate, and the Gaussian blending (Isensee et al., nnU-Net 2021; MONAI's
``sliding_window_inference``) then hides the seams. At the borders of the volume the context is the volume mirrored
(reflect padding), so edge voxels are treated like interior ones. (Ours rather than MONAI's
``sliding_window_inference``: MONAI's tiles have no halo, so their seams are blended, not exact; ours is as fast on
an H100 (docs/benchmarks.md), handles ``scale > 1`` and runs out-of-memory retries.)

Geometry. A 3D network acts on the volume's three axes (slice, row, column); a 2D network on every (row, column)
image of every slice and frame. With ``scale > 1`` the output grid has ``scale`` times as many voxels along the axes
the network acts on; voxel ``j`` of the output lies at input index ``(j + 0.5) / scale - 0.5`` (the cell-centred
convention of `mrisr.physics.degrade.Downsample`), and the returned `Volume`'s affine says so.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import mrisr.volume
from mrisr.errors import InputError, check_number
from mrisr.physics.consistency import enforce
from mrisr.physics.degrade import load_degradation
from mrisr.training.device import (channels_last_format, cudnn_autotuning, default_device, is_out_of_memory,
                                   padded_input_channels, speed_settings)
from mrisr.volume import Volume

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Tiling:
    """How a run cuts its input: ``tile`` input voxels per spatial axis (halo included), ``batch_size`` tiles per
    forward pass."""

    tile: tuple[int, ...]
    batch_size: int


def model_geometry(model: nn.Module) -> tuple[int, int, float]:
    """``(ndim, scale, receptive radius in input voxels)`` of a network; ``radius`` is ``nan`` when unknown."""
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d,
                                                          nn.ConvTranspose3d))]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution: cannot tell whether it is 2D or 3D")
    ndim = getattr(model, "ndim", 3 if isinstance(convs[0], (nn.Conv3d, nn.ConvTranspose3d)) else 2)
    radius = model.receptive_radius() if hasattr(model, "receptive_radius") else math.nan
    return int(ndim), int(getattr(model, "scale", 1)), float(radius)


def bytes_per_voxel(model: nn.Module, element_size: int) -> float:
    """Estimated peak activation memory of a forward pass without gradients, per input voxel of a tile, with a
    margin: four feature maps at the input resolution and three at the output resolution. The seed-size EDSR3D
    (scale 1) measured about four in all, in bf16 and fp32 on an H100 (docs/benchmarks.md)."""
    ndim, scale, _ = model_geometry(model)
    channels = max(m.out_channels for m in model.modules() if hasattr(m, "out_channels"))
    return element_size * channels * (4 + 3 * scale**ndim)


def memory_budget(device: torch.device) -> int:
    """Bytes a run may use for activations: 60 % of the GPU's free memory, or on the CPU a quarter of the available
    memory, at most 4 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.6 * free)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 << 30
    return int(min(4 << 30, available // 4))


def choose_tiling(shape: Sequence[int], halo: int, budget: int, per_voxel: float, n_images: int = 1,
                  multiple: int = 8, overlap: float = 0.0) -> Tiling:
    """The tile (halo included) that covers the image with the least computation, and how many fit in one batch.

    Among tiles whose activations fit in ``budget`` bytes at ``per_voxel`` bytes each, every side a ``multiple`` of
    voxels or the whole padded axis (``shape + 2 * halo``), it takes the one with the fewest voxels processed in all
    (number of tiles x tile size: halos and overlaps are extra work), the larger tile on ties. A long thin slab that
    spans two axes often beats a cube: its halo is paid on one axis only.
    """
    voxels = max(budget / per_voxel, 1.0)
    sizes, counts = [], []
    for n in shape:
        limit = n + 2 * halo
        first = (2 * halo // multiple + 1) * multiple
        candidates = np.array(sorted({limit, *range(first, limit, multiple)}))
        sizes.append(candidates)
        counts.append(np.array([len(tile_starts(n, int(t) - 2 * halo, overlap)) for t in candidates]))
    size = np.prod(np.meshgrid(*sizes, indexing="ij"), axis=0).astype(float)
    work = size * np.prod(np.meshgrid(*counts, indexing="ij"), axis=0)
    work[size > voxels] = np.inf
    if np.isinf(work).all():  # nothing fits: the smallest tile, and out-of-memory handling if it still fails
        best = (0,) * len(shape)
    else:
        best = np.unravel_index(np.lexsort((-size.ravel(), work.ravel()))[0], work.shape)
    tile = tuple(int(s[i]) for s, i in zip(sizes, best))
    n_tiles = n_images * math.prod(int(c[i]) for c, i in zip(counts, best))
    batch = int(max(1, min(n_tiles, voxels // math.prod(tile))))
    return Tiling(tile, batch)


def tile_starts(n: int, core: int, overlap: float) -> list[int]:
    """Start indices of the kept cores (``core`` voxels each) that cover ``range(n)``, neighbours sharing about
    ``overlap`` of a core; the last core ends at ``n``."""
    if n <= core:
        return [0]
    step = max(1, int(round(core * (1 - overlap))))
    return sorted(set(range(0, n - core, step)) | {n - core})


def blending_weights(core: Sequence[int], blend: str, sigma_scale: float = 0.125) -> np.ndarray:
    """Weight of each voxel of a tile's kept core: constant, or a Gaussian centred on the core with a standard
    deviation of ``sigma_scale`` times its size (floored at 1e-3 of the peak, so every voxel counts)."""
    if blend == "constant":
        return np.ones(core, np.float32)
    if blend != "gaussian":
        raise ValueError(f"blend must be 'gaussian' or 'constant', got {blend!r}")
    axes = [np.exp(-0.5 * ((np.arange(c) - (c - 1) / 2) / max(sigma_scale * c, 1e-6)) ** 2) for c in core]
    weights = axes[0]
    for a in axes[1:]:
        weights = np.multiply.outer(weights, a)
    return np.maximum(weights / weights.max(), 1e-3).astype(np.float32)


def _smaller(tiling: Tiling, halo: int) -> Tiling | None:
    if tiling.batch_size > 1:
        return Tiling(tiling.tile, tiling.batch_size // 2)
    side = max(tiling.tile)
    shrunk = max(2 * halo + 1, int(side * 0.75))
    if shrunk >= side:
        return None
    return Tiling(tuple(min(t, shrunk) for t in tiling.tile), 1)


def _reflect_pad(images: torch.Tensor, halo: int) -> torch.Tensor:
    """``images`` ``(N, *spatial)`` mirrored by ``halo`` voxels on every side (numpy's "reflect": the edge voxel is not
    repeated), where they lie; images thinner than the halo are mirrored repeatedly (on the CPU), single voxels
    repeated."""
    shape = images.shape[1:]
    if halo < min(shape):
        return F.pad(images[:, None], [halo] * 2 * len(shape), mode="reflect")[:, 0]
    padded = np.pad(images.cpu().numpy(), [(0, 0)] + [(halo, halo)] * len(shape),
                    mode="reflect" if min(shape) > 1 else "edge")
    return torch.from_numpy(padded).to(images.device)


def _run(model, images: torch.Tensor, halo: int, scale: int, tiling: Tiling, overlap: float, blend: str,
         device: torch.device, autocast: torch.dtype | None, memory_format: torch.memory_format,
         progress: bool) -> torch.Tensor:
    """One sliding-window pass over ``images`` ``(N, *spatial)`` (normalised; on the CPU or on ``device``); returns
    ``(N, *spatial * scale)`` where ``images`` lie."""
    ndim = images.ndim - 1
    shape = images.shape[1:]
    store = images.device
    core = [min(t - 2 * halo, n) for t, n in zip(tiling.tile, shape)]
    padded = _reflect_pad(images, halo)
    starts = [tile_starts(n, c, overlap) for n, c in zip(shape, core)]
    jobs = [(i, s) for i in range(len(images)) for s in np.stack(np.meshgrid(*starts, indexing="ij"),
                                                                   -1).reshape(-1, ndim)]
    weights = torch.from_numpy(blending_weights([c * scale for c in core], blend)).to(store)
    out = torch.zeros((len(images), *[n * scale for n in shape]), device=store)
    total = torch.zeros_like(out)
    keep = tuple(slice(halo * scale, (halo + c) * scale) for c in core)
    batches = range(0, len(jobs), tiling.batch_size)
    if progress:
        from fastprogress.fastprogress import progress_bar

        batches = progress_bar(batches, leave=False)
    for first in batches:
        batch = jobs[first:first + tiling.batch_size]
        tiles = torch.stack([padded[(i, *(slice(b, b + c + 2 * halo) for b, c in zip(s, core)))] for i, s in batch])
        x = tiles[:, None].to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with torch.inference_mode(), torch.autocast(device.type, autocast, enabled=autocast is not None):
            y = model(x)
        y = y[(slice(None), 0, *keep)].float().to(store)
        for (i, s), tile in zip(batch, y):
            index = (i, *(slice(b * scale, (b + c) * scale) for b, c in zip(s, core)))
            out[index] += tile * weights
            total[index] += weights
    return out / total


def predict_volume(model: nn.Module, volume: Volume | np.ndarray, tile_size: int | Sequence[int] | None = None,
                   overlap: float | None = None, batch_size: int | None = None,
                   device: str | torch.device | None = None,
                   dtype: str | None = None, blend: str = "gaussian", halo: int | None = None,
                   intensity_scale: float | None = None, memory_gb: float | None = None,
                   channels_last: bool | None = None, cudnn_benchmark: bool | None = None,
                   consistency=None, progress: bool = False) -> Volume | np.ndarray:
    """Super-resolve a whole scan with ``model``, tile by tile; the result is on the CPU, in the input's intensities.

    Args:
        model: a network taking ``(batch, 1, *spatial)`` normalised images (`mrisr.networks.models`); 2D networks run on
            every (row, column) image, 3D networks on every volume (frame).
        volume: a `Volume` (3D, or 4D time series) or a float array whose last 2 or 3 axes are spatial.
        tile_size: tile size in input voxels per spatial axis, halo included (int or one per axis); ``None`` picks
            the largest that fits the memory budget (`choose_tiling`).
        overlap: fraction (0 to <1) of a tile's kept core shared with each neighbour; default 0 when the halo covers
            the receptive field (tiles are then exact and overlap would only cost time), else 0.25.
        batch_size: tiles per forward pass; ``None`` fills the memory budget.
        device: where the network runs (default: CUDA when available). The model is moved there.
        dtype: ``"bf16"`` or ``"fp16"`` to run under autocast (CUDA only; ignored on the CPU), ``"fp32"`` for full
            precision; ``None``: `mrisr.training.device.FAST_PATH`'s choice on CUDA (``python -m benchmarks.speed``),
            fp32 elsewhere.
        blend: ``"gaussian"`` or ``"constant"`` weighting of overlapping cores.
        halo: context voxels cut off each side of a tile's output; default: the network's receptive-field radius,
            which makes the result equal to one pass over the whole (reflect-padded) volume.
        intensity_scale: raw intensity that maps to 1.0 for the network; default: the input's 99.5th percentile,
            as in training (`mrisr.data.pipeline.intensity_scale`).
        memory_gb: activation memory budget in GiB; default `memory_budget` (60 % of free GPU memory). On running
            out of memory the run retries with half the batch, then smaller tiles, and warns.
        channels_last: run in the channels-last memory format (``channels_last_3d`` for 3D networks; a 3D network's
            one-channel first conv then also runs padded to 8 channels, `mrisr.training.device.padded_input_channels`);
            ``None``: `mrisr.training.device.FAST_PATH`'s choice on CUDA, off elsewhere.
        cudnn_benchmark: let cuDNN time its algorithms for the tile shape (``torch.backends.cudnn.benchmark``, restored
            afterwards); ``None``: `mrisr.training.device.FAST_PATH`'s choice on CUDA, off elsewhere.
        consistency: the `mrisr.physics.degrade.Degradation` (or preset name, or spec file) that made ``volume``: the
            output is then made consistent with ``volume`` under it (`mrisr.physics.consistency.enforce`: the measured
            k-space band put back, or iterative back-projection), on ``device`` when it is a GPU. ``volume`` must then
            be a `Volume`.
        progress: show a progress bar over batches.

    On CUDA the volume is padded, blended and normalised on the GPU when it fits in a quarter of the free memory.

    Returns:
        A `Volume` (float32; affine scaled for ``scale > 1``) or an array, as given.
    """
    device = default_device(device)
    if consistency is not None:
        consistency = load_degradation(consistency)
        if not isinstance(volume, Volume):
            raise ValueError("consistency= needs a Volume (its spacing and phase-encoding axes say how it was "
                             "degraded); for arrays call mrisr.physics.consistency.enforce with spacing= and "
                             "phase_encoding_axes=")
    ndim, scale, radius = model_geometry(model)
    if halo is None:
        if math.isnan(radius):
            raise ValueError(f"{type(model).__name__} does not report its receptive field; pass halo= (voxels)")
        halo = int(math.ceil(radius))
    if overlap is None:
        overlap = 0.0 if halo >= radius else 0.25
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume, np.float32)
    _check_arguments(data, volume.meta.get("source_path") if isinstance(volume, Volume) else None, ndim, tile_size,
                     batch_size, halo, overlap, memory_gb, dtype)
    dtype, channels_last, cudnn_benchmark = speed_settings("predict", device, dtype=dtype, channels_last=channels_last,
                                                           cudnn_benchmark=cudnn_benchmark).values()
    autocast = AUTOCAST_DTYPES.get(dtype) if device.type == "cuda" else None
    shape = data.shape[-ndim:]
    images = torch.from_numpy(np.ascontiguousarray(data.reshape(-1, *shape), np.float32))
    store = torch.device("cpu")
    if device.type == "cuda":  # input, padded input, output and weights on the GPU if they take a quarter at most
        needed = 4 * images.numel() * (2 + 2 * scale**ndim) + 4 * len(images) * math.prod(n + 2 * halo for n in shape)
        store = device if needed <= 0.25 * torch.cuda.mem_get_info(device)[0] else store
    images = images.to(store)
    if intensity_scale is None:  # numpy's on the CPU, as in training; a sort where it lies on the GPU
        scale_value = mrisr.volume.intensity_scale(images if images.is_cuda else data)  # the argument shadows it
    else:
        scale_value = float(intensity_scale)
    images = images / scale_value  # a new tensor: on the CPU, images shares memory with the caller's array

    memory_format = channels_last_format(ndim) if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).eval()
    budget = int(memory_gb * 2**30) if memory_gb else memory_budget(device)
    per_voxel = bytes_per_voxel(model, 2 if autocast is not None else 4)
    tiling = choose_tiling(shape, halo, budget, per_voxel, len(images), overlap=overlap)
    if tile_size is not None:
        tile = tuple(int(p) for p in np.broadcast_to(tile_size, ndim))
        if min(tile) <= 2 * halo:
            raise ValueError(f"tile_size {tile} leaves nothing inside the {halo}-voxel halo; use tiles larger than "
                             f"{2 * halo} voxels or a smaller halo")
        tiling = Tiling(tile, max(1, int(budget / per_voxel // math.prod(tile))))
    if batch_size is not None:
        tiling = Tiling(tiling.tile, int(batch_size))

    def run(tiling: Tiling) -> torch.Tensor:
        with cudnn_autotuning(cudnn_benchmark), padded_input_channels(model, enabled=channels_last and ndim == 3):
            return _run(model, images, halo, scale, tiling, overlap, blend, device, autocast, memory_format, progress)

    out, tiling = _with_smaller_tiles_on_oom(run, tiling, halo, device)
    out = (out * scale_value).cpu().numpy().reshape(*data.shape[:-ndim], *out.shape[1:])
    if not np.isfinite(out).all():
        raise FloatingPointError(f"the network's output has {int((~np.isfinite(out)).sum())} non-finite voxel(s) "
                                 f"(overflow in {dtype}?); try dtype='fp32' or check the checkpoint")
    if not isinstance(volume, Volume):
        return out
    # output index j sits at input index (j + 0.5) / scale - 0.5
    affine = volume.resampled_affine({axis: (1 / scale, 0.5 / scale - 0.5) for axis in range(3 - ndim, 3)})
    result = Volume(out, affine, {**volume.meta, "super_resolution": {"model": type(model).__name__, "scale": scale,
                                                                      "tile": list(tiling.tile), "halo": halo}})
    if consistency is None:
        return result
    return enforce(result, volume, consistency, device=device if device.type == "cuda" else None)


def _check_arguments(data: np.ndarray, source, ndim: int, tile_size, batch_size, halo: int, overlap: float,
                     memory_gb, dtype) -> None:
    """`predict_volume`'s numbers, each refused with an error that names it and what it must be."""
    check_number("overlap", overlap, "a fraction of the tile in [0, 1)", minimum=0, below=1)
    if dtype not in (None, "fp32", *AUTOCAST_DTYPES):
        raise ValueError(f"dtype must be 'bf16', 'fp16', 'fp32' or None (the fast path), got {dtype!r}")
    if data.ndim < ndim:
        raise ValueError(f"a {ndim}D network needs at least {ndim} axes, got an array of shape {data.shape}")
    if batch_size is not None:
        check_number("batch_size", batch_size, "a number of tiles per forward pass, an integer >= 1", minimum=1,
                     integer=True)
    for size in np.atleast_1d(tile_size if tile_size is not None else []).tolist():
        check_number("tile_size", size, "a tile size in voxels, integers >= 1", minimum=1, integer=True)
    if tile_size is not None and np.ndim(tile_size) and len(tile_size) != ndim:
        raise ValueError(f"tile_size must be one tile size or {ndim} (one per axis of a {ndim}D network), got "
                         f"{tile_size}")
    check_number("halo", halo, "a number of voxels, an integer >= 0", minimum=0, integer=True)
    if memory_gb is not None:
        check_number("memory_gb", memory_gb, "a memory budget in GB, > 0", above=0)
    if not np.isfinite(data).all():  # one non-finite voxel spreads through every convolution that sees it
        bad = int((~np.isfinite(data)).sum())
        raise InputError(source, f"{bad} voxel(s) are NaN or infinite; replace them first (loaders take nan=VALUE)")


def _with_smaller_tiles_on_oom(run, tiling: Tiling, halo: int, device: torch.device) -> tuple[torch.Tensor, Tiling]:
    """``(run(tiling), tiling)``, retried with half the batch, then smaller tiles (`_smaller`), while the device runs
    out of memory; each retry warns."""
    while True:
        try:
            return run(tiling), tiling
        except Exception as err:  # noqa: BLE001 (out-of-memory errors come in several types)
            if not is_out_of_memory(err):
                raise
            smaller = _smaller(tiling, halo)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if smaller is None:
                raise MemoryError(f"out of memory even with {tiling.tile} tiles one at a time; pass a smaller halo "
                                  "or run on a device with more memory") from err
            warnings.warn(f"out of memory with {tiling.batch_size} tile(s) of {tiling.tile}; retrying with "
                          f"{smaller.batch_size} of {smaller.tile}", RuntimeWarning, stacklevel=3)
            tiling = smaller
