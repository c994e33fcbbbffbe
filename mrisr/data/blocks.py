"""fastai types for pairs of volumes: `LRVolume` (the network's input) and `HRVolume` (its target), tensors
``(batch, 1, D, H, W)`` or ``(batch, 1, H, W)`` whose ``show`` draws three orthogonal slices of a volume (or the
image in 2D), and `VolumeBlock`, the ``TransformBlock`` that makes ``DataBlock`` work for them, ``show_batch`` and
``show_results`` included."""

from __future__ import annotations

import numpy as np
import torch
from fastai.data.block import TransformBlock
from fastai.data.core import show_batch
from fastai.learner import show_results
from fastai.torch_core import TensorBase

from mrisr.imaging.metrics import gain_db


def orthogonal_montage(image: torch.Tensor) -> np.ndarray:
    """A 2D array to display: the image itself in 2D; in 3D the three central orthogonal slices side by side
    (slice axis 0 cut, then rows, then columns), each padded to a common height."""
    array = image.detach().float().cpu().numpy().squeeze()
    if array.ndim == 2:
        return array
    d, h, w = array.shape
    views = [array[d // 2], array[:, h // 2], array[:, :, w // 2]]
    height = max(v.shape[0] for v in views)
    pad = [np.pad(v, ((0, height - v.shape[0]), (0, 1)), constant_values=np.nan) for v in views]
    return np.concatenate(pad, axis=1)


class VolumeTensor(TensorBase):
    """A normalised ``(1, *spatial)`` image or volume; ``show`` draws it (3D: three orthogonal slices).

    Arithmetic mixing an input and a target (``x - y``) gives a plain ``torch.Tensor``.
    """

    @classmethod
    def create(cls, t: torch.Tensor):
        return cls(t)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if len({t for t in types if issubclass(t, VolumeTensor)}) < 2:
            return super().__torch_function__(func, types, args, kwargs)
        plain = [a.as_subclass(torch.Tensor) if isinstance(a, VolumeTensor) else a for a in args]
        return func(*plain, **(kwargs or {}))

    def show(self, ctx=None, title=None, vmin=0.0, vmax=1.0, **kwargs):
        import matplotlib.pyplot as plt

        ctx = ctx or plt.subplots(figsize=kwargs.pop("figsize", (6, 2.5)))[1]
        ctx.imshow(orthogonal_montage(self), cmap="gray", vmin=vmin, vmax=vmax)
        ctx.set_axis_off()
        if title:
            ctx.set_title(title)
        return ctx


class LRVolume(VolumeTensor):
    """Network input (degraded)."""


class HRVolume(VolumeTensor):
    """Target (original resolution)."""


def VolumeBlock(cls=HRVolume) -> TransformBlock:  # noqa: N802  (fastai's block naming)
    """The ``TransformBlock`` of volumes/images for ``DataBlock``: types a getter's ``(1, *spatial)`` tensor as ``cls``
    (`LRVolume` for the input, `HRVolume` for the target), so batches show and dispatch as volumes."""
    return TransformBlock(type_tfms=cls.create)


def _show_pairs(samples, outs=None, max_n=4, figsize=None):
    import matplotlib.pyplot as plt

    n = min(len(samples), max_n)
    columns = 3 if outs is not None else 2
    fig, axes = plt.subplots(n, columns, figsize=figsize or (4 * columns, 2.2 * n), squeeze=False)
    for row in range(n):
        panels = [samples[row][0], samples[row][1]] + ([outs[row][0]] if outs is not None else [])
        titles = ["input", "target", "prediction"] if row == 0 else [None, None, ""]
        if outs is not None:  # what the network added to its input on this patch
            gain = float(gain_db(*(torch.as_tensor(p).float()[None] for p in (panels[2], panels[0], panels[1])))[0])
            titles[2] = f"{titles[2] or ''} {gain:+.2f} dB".strip()
        for col, panel in enumerate(panels):
            VolumeTensor(panel).show(ctx=axes[row, col], title=titles[col])
    fig.tight_layout()
    return axes.ravel().tolist()


@show_batch.dispatch
def _show_batch(x: LRVolume, y: HRVolume, samples, ctxs=None, max_n=4, figsize=None, **kwargs):
    return _show_pairs(samples, max_n=max_n, figsize=figsize)


@show_results.dispatch
def _show_results(x: LRVolume, y: HRVolume, samples, outs, ctxs=None, max_n=4, figsize=None, **kwargs):
    return _show_pairs(samples, outs, max_n=max_n, figsize=figsize)
