"""A fastai data pipeline for super-resolution of volumes (3D patches) and of slices (2D), built on ``DataBlock``.

The pieces, each one idea:

* `Subject`: one scan ready to train on: the high-resolution (HR) images, their degraded low-resolution (LR)
  version, both normalised by the subject's own intensity scale and held in memory as float16, and where its
  foreground is. `prepare_subject` makes one from a `Volume` and a `Degradation`.
* `PatchSampler`: where each training patch is cut: at the same place in LR and HR, mostly on tissue, new places
  every epoch, fixed places for validation.
* `LRVolume` / `HRVolume` and `VolumeBlock` (`mrisr.data.blocks`): the fastai types and ``TransformBlock`` of the pairs,
  which ``DataBlock``, ``show_batch`` and ``show_results`` work with.
* Batch transforms on the device: `DegradeBatch` (degrade HR patches on the fly instead of precomputing LR),
  `RandomFlipPermute` and `RandomIntensityScale` (augmentation applied identically to input and target).

`sr_dataloaders` wires them into ``DataLoaders``; which scans are subjects, and how they split, is `mrisr.data.cases`.
Tensors are ``(batch, 1, D, H, W)`` in 3D (axes: slice, row, column of `mrisr.volume`) and ``(batch, 1, H, W)`` in
2D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from fastai.data.block import DataBlock
from fastai.data.transforms import FuncSplitter
from fastai.vision.augment import RandTransform
from fasttransform import Transform

from mrisr.data.blocks import HRVolume, LRVolume, VolumeBlock, VolumeTensor
from mrisr.imaging.foreground import foreground_mask, tissue_threshold
from mrisr.physics.degrade import Degradation
from mrisr.volume import Volume, intensity_scale

# -- subjects -----------------------------------------------------------------------------------------------------


@dataclass
class Subject:
    """One subject in memory, normalised: ``normalised = raw / intensity_scale``.

    Attributes:
        name: case name (used by the subject-level splitter).
        hr: float16 ``(N, *spatial)``: N images (N = 1 for a 3D volume, or its frames; slices x frames in 2D).
        lr: float16 ``(N, *lr_spatial)``: the degraded input; ``lr_spatial = spatial / factors`` (equal for a
            same-grid degradation), or ``None`` when degradation happens on the fly (`DegradeBatch`).
        factors: integer HR-to-LR size ratio per spatial axis.
        spacing: HR voxel size in mm per spatial axis.
        foreground: int32 ``(K, 1 + ndim)`` sample of foreground voxel indices ``(n, *position)`` in ``hr``.
        intensity_scale: the raw intensity that maps to 1.0: the 99.5th percentile of the network's input (the
            degraded image; the HR image when degrading on the fly), as `mrisr.inference.tiled.predict_volume`
            normalises.
        tissue_level: normalised intensity above which a voxel counts as tissue (`tissue_threshold`).
        phase_encoding_axes: spatial axes (of ``hr``'s images) that were phase encoded, or ``None`` if unknown.
        axis_roles: per spatial axis, what the degradation does along it (`Degradation.axis_roles`); ``None`` if
            unknown. Augmentation swaps only axes with equal roles.
        residual: float32 ``(K,)``, per foreground sample, how much the LR image differs from the HR image around
            it (``|HR - LR|`` smoothed over about 2 voxels; ``None`` when degrading on the fly): where the detail
            the network must restore lies.
    """

    name: str
    hr: torch.Tensor
    lr: torch.Tensor | None
    factors: tuple[int, ...]
    spacing: tuple[float, ...]
    foreground: np.ndarray
    intensity_scale: float
    tissue_level: float
    phase_encoding_axes: tuple[int, ...] | None = None
    axis_roles: tuple | None = None
    residual: np.ndarray | None = None

    @property
    def ndim(self) -> int:
        return self.hr.ndim - 1


def prepare_subject(volume: Volume, degradation: Degradation | None, name: str | None = None, seed: int = 0,
                    max_foreground: int = 200_000, on_the_fly: bool = False) -> Subject:
    """Normalise ``volume`` and degrade it with ``degradation`` (``None`` or ``on_the_fly``: degrade later, per
    batch; a degradation given with ``on_the_fly`` still says which axes it treats alike).

    A 3D degradation keeps the volume (and its frames) as images; a 2D degradation makes every slice of every frame
    an image. The foreground is `foreground_mask` of the volume (of its time average for a time series).
    """
    name = name or str(volume.meta.get("source_path", "subject"))
    ndim = 3 if degradation is None else degradation.ndim
    data = volume.data if volume.data.ndim == 4 else volume.data[None]  # (T, S, R, C)
    mask = foreground_mask(volume)
    pe, roles = None, None
    if degradation is not None:
        spacing, pe = degradation.volume_axes(volume)
        roles = degradation.axis_roles(spacing, pe)
    elif volume.meta.get("phase_encoding_axes") is not None:
        pe = tuple(int(a) for a in volume.meta["phase_encoding_axes"])
    lr = None if degradation is None or on_the_fly else degradation(volume, seed=seed).data
    scale = intensity_scale(data if lr is None else lr)  # the network input's, as `predict_volume` computes it
    tissue_level = float(tissue_threshold(torch.from_numpy(data.mean(0)), 3)) / scale
    hr = data.reshape(-1, *data.shape[-ndim:]) / scale
    if lr is not None:
        lr = (lr if lr.ndim == 4 else lr[None]).reshape(-1, *lr.shape[-ndim:]) / scale
        ratio = np.divide(hr.shape[1:], lr.shape[1:])
        if not np.allclose(ratio, np.round(ratio)):
            raise ValueError(f"{name}: LR grid {lr.shape[1:]} is not an integer fraction of HR {hr.shape[1:]}")
    factors = (1,) * ndim if lr is None else tuple(int(round(a / b)) for a, b in zip(hr.shape[1:], lr.shape[1:]))
    coords = np.argwhere(mask)  # (K, 3): (s, r, c)
    frames = data.shape[0]
    if ndim == 3:
        coords = np.concatenate([np.insert(coords, 0, t, axis=1) for t in range(frames)])
    else:  # image index n = t * S + s
        coords = np.concatenate([np.column_stack([t * data.shape[1] + coords[:, 0], coords[:, 1:]])
                                 for t in range(frames)])
    if len(coords) > max_foreground:
        coords = coords[np.random.default_rng(seed).choice(len(coords), max_foreground, replace=False)]
    residual = None
    if lr is not None:  # |HR - LR| (LR repeated onto the HR grid), smoothed, at each foreground sample
        upsampled = lr
        for axis, f in enumerate(factors):
            upsampled = upsampled.repeat(f, axis=1 + axis)
        difference = ndimage.gaussian_filter(np.abs(hr - upsampled), sigma=[0] + [2.0] * ndim)
        residual = difference[tuple(coords.T)].astype(np.float32)
    return Subject(name, torch.from_numpy(hr.astype(np.float16)),
                   None if lr is None else torch.from_numpy(lr.astype(np.float16)), factors,
                   tuple(volume.spacing[3 - ndim:]), coords.astype(np.int32), scale, tissue_level, pe, roles, residual)


@dataclass(frozen=True)
class PatchRef:
    """One dataset item: patch number ``index`` of subject ``subject`` (validation patches never move)."""

    subject: int
    index: int
    valid: bool


class PatchSampler:
    """Cuts paired LR/HR patches from `Subject` s.

    ``patch_size`` is the HR patch in voxels per spatial axis (a multiple of the LR factors; ``None``: whole images).
    With probability ``foreground_fraction`` a patch must be on tissue: it is centred on a random foreground voxel
    (with ``residual_sampling``, a foreground voxel drawn with probability in proportion to ``0.5 / K + 0.5 *
    residual / sum(residual)``: half of the patches go where the LR and HR images differ most, at edges and fine
    texture, instead of uniformly over tissue) and redrawn (up to ``tries`` times, keeping the best) until at least
    ``min_tissue`` of its voxels are above the subject's tissue level; otherwise it is placed uniformly. Each patch's
    place is a pure function of ``(seed, epoch, subject, index)``: the LR and HR getters agree, a new ``epoch`` gives
    new places, and validation patches use a fixed epoch. With a CUDA ``device`` the patches are cut from copies of
    the images on the GPU (places are still chosen on the CPU): no host-to-device copy then stalls the training loop.
    ``align``: per spatial axis, patch starts are multiples of it (and of the LR factor), e.g. a network that folds
    axis 0 by ``k`` (`mrisr.networks.models.fold_axis0`) and must see the samples at one phase among its ``k`` rows.
    """

    def __init__(self, subjects: Sequence[Subject], patch_size: Sequence[int] | int | None,
                 foreground_fraction: float = 0.9, seed: int = 0, min_tissue: float = 0.5, tries: int = 10,
                 device: str | torch.device | None = None, residual_sampling: bool = False,
                 align: Sequence[int] | None = None):
        self.subjects, self.seed, self.epoch = list(subjects), seed, 0
        self.cumulative = [_centre_cdf(s, residual_sampling) for s in self.subjects]
        self.device = torch.device(device) if device is not None else None
        self._last, self._device_images = (None, None), {}
        self.foreground_fraction, self.min_tissue, self.tries = foreground_fraction, min_tissue, tries
        ndim = self.subjects[0].ndim
        self.align = tuple(int(a) for a in np.broadcast_to(1 if align is None else align, ndim))
        if patch_size is not None:
            patch_size = tuple(int(p) for p in np.broadcast_to(patch_size, ndim))
            for s in self.subjects:
                bad = [(p, f) for p, f in zip(patch_size, s.factors) if p % f]
                if bad or any(p > n for p, n in zip(patch_size, s.hr.shape[1:])):
                    raise ValueError(f"{s.name}: patch {patch_size} must fit in {tuple(s.hr.shape[1:])} and be a "
                                     f"multiple of the LR factors {s.factors}")
            if any(p % a for p, a in zip(patch_size, self.align)):
                raise ValueError(f"patch {patch_size} must be a multiple of the alignment {self.align}")
        self.patch_size = patch_size

    def location(self, ref: PatchRef) -> tuple[int, tuple[int, ...]]:
        """``(image index n, HR start per axis)`` of a patch (remembered for the next call: the LR and HR getters ask
        for the same patch one after the other)."""
        key = (ref, self.epoch)
        if self._last[0] != key:
            self._last = (key, self._draw(ref))
        return self._last[1]

    def _draw(self, ref: PatchRef) -> tuple[int, tuple[int, ...]]:
        subject = self.subjects[ref.subject]
        rng = np.random.default_rng([self.seed, 0 if ref.valid else self.epoch + 1, ref.subject, ref.index])
        if self.patch_size is None:
            return int(rng.integers(subject.hr.shape[0])), (0,) * subject.ndim
        size = subject.hr.shape[1:]
        if not len(subject.foreground) or rng.random() >= self.foreground_fraction:
            start = [int(rng.integers(s - p + 1)) for s, p in zip(size, self.patch_size)]
            return self._aligned(subject, int(rng.integers(subject.hr.shape[0])), start)
        best = (-1.0, None)
        cdf = self.cumulative[ref.subject]
        for _ in range(self.tries):
            pick = rng.integers(len(subject.foreground)) if cdf is None else min(
                int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)
            n, *centre = subject.foreground[pick]
            candidate = self._aligned(subject, int(n), [c - p // 2 for c, p in zip(centre, self.patch_size)])
            tissue = self.tissue_fraction(subject, candidate)
            if tissue > best[0]:
                best = (tissue, candidate)
            if tissue >= self.min_tissue:
                break
        return best[1]

    def _aligned(self, subject: Subject, n: int, start) -> tuple[int, tuple[int, ...]]:
        size = subject.hr.shape[1:]
        steps = [int(np.lcm(f, a)) for f, a in zip(subject.factors, self.align)]
        return n, tuple(int(np.clip(b, 0, s - p)) // m * m for b, s, p, m in zip(start, size, self.patch_size, steps))

    def tissue_fraction(self, subject: Subject, location) -> float:
        """Fraction of the HR patch at ``location`` above the subject's tissue level."""
        n, start = location
        index = tuple(slice(b, b + p) for b, p in zip(start, self.patch_size))
        return float((subject.hr[n][index] > subject.tissue_level).float().mean())

    def _crop(self, images: torch.Tensor, ref: PatchRef, factors) -> torch.Tensor:
        n, start = self.location(ref)
        size = self.patch_size or images.shape[1:]
        index = tuple(slice(b // f, b // f + p // f) for b, p, f in zip(start, size, factors))
        return images[n][index][None].float()  # (1, *patch): one channel

    def _images(self, index: int, which: str) -> torch.Tensor:
        """Subject ``index``'s ``"hr"`` or ``"lr"`` images where patches are cut: on the CUDA ``device`` (copied once)
        or where they are."""
        images = getattr(self.subjects[index], which)
        if self.device is None or self.device.type != "cuda":
            return images
        if (index, which) not in self._device_images:
            self._device_images[index, which] = images.to(self.device)
        return self._device_images[index, which]

    def hr_patch(self, ref: PatchRef) -> torch.Tensor:
        """The HR patch ``(1, *patch_size)``, float32."""
        subject = self.subjects[ref.subject]
        return self._crop(self._images(ref.subject, "hr"), ref, (1,) * subject.ndim)

    def lr_patch(self, ref: PatchRef) -> torch.Tensor:
        """The LR patch at the same place, or the HR patch when the subject is degraded on the fly."""
        subject = self.subjects[ref.subject]
        if subject.lr is None:
            return self.hr_patch(ref)
        return self._crop(self._images(ref.subject, "lr"), ref, subject.factors)


def _centre_cdf(subject: Subject, residual_sampling: bool) -> np.ndarray | None:
    """Cumulative weights of the subject's foreground samples as patch centres (``None``: uniform)."""
    if not residual_sampling or subject.residual is None or not len(subject.residual):
        return None
    residual = subject.residual.astype(np.float64)
    total = residual.sum()
    weights = 0.5 / len(residual) + (0.5 * residual / total if total > 0 else 0.5 / len(residual))
    return np.cumsum(weights)


# -- fastai types -------------------------------------------------------------------------------------------------

class DegradeBatch(Transform):
    """Degrade the input patches of each batch on its device (train and validation), with ``degradation``.

    ``phase_encoding_axes`` and ``spacing`` are spatial-axis values as `Degradation` takes them. Degrading a
    patch is not degrading the volume (k-space steps see the patch's edges); precomputing is exact, this is fast.
    """

    order = 0

    def __init__(self, degradation: Degradation, spacing=None, phase_encoding_axes=None):
        super().__init__()
        if degradation.needs_scan_noise():
            raise ValueError(f"{degradation.name}: noise at the scan's own level cannot be measured on patches; "
                             "degrade each volume once (degrade_on_the_fly=False) or give RicianNoise an snr")
        self.degradation, self.spacing, self.phase_encoding_axes = degradation, spacing, phase_encoding_axes

    def encodes(self, x: LRVolume):
        return LRVolume(self.degradation(x.as_subclass(torch.Tensor), spacing=self.spacing,
                                         phase_encoding_axes=self.phase_encoding_axes))


class RandomFlipPermute(RandTransform):
    """Training augmentation: flip each spatial axis of each sample with probability ``p`` and permute the
    ``permutable`` axes (those with equal voxel size and LR factor) at random; same for input and target."""

    order = 10

    def __init__(self, ndim: int, p: float = 0.5, permutable: Sequence[int] = ()):
        super().__init__(p=1.0)
        self.ndim, self.flip_p, self.permutable = ndim, p, tuple(permutable)

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        x = b[0] if isinstance(b, tuple) else b
        self.flips = torch.rand(x.shape[0], self.ndim, device=x.device) < self.flip_p
        order = list(range(self.ndim))
        if len(self.permutable) > 1:
            shuffled = [self.permutable[i] for i in torch.randperm(len(self.permutable)).tolist()]
            for axis, new in zip(self.permutable, shuffled):
                order[axis] = new
        self.order_axes = order

    def encodes(self, x: VolumeTensor):
        cls = type(x)
        t = x.as_subclass(torch.Tensor)
        for axis in range(self.ndim):
            dim = 2 + axis
            keep = self.flips[:, axis].view(-1, *[1] * (t.ndim - 1))
            t = torch.where(keep, t.flip(dim), t)
        t = t.permute(0, 1, *[2 + a for a in self.order_axes])
        return cls(t.contiguous())


class RandomIntensityScale(RandTransform):
    """Training augmentation: multiply each sample (input and target alike) by a factor in ``[1 - r, 1 + r]``."""

    order = 11

    def __init__(self, r: float = 0.1):
        super().__init__(p=1.0)
        self.r = r

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        x = b[0] if isinstance(b, tuple) else b
        self.factor = 1 + self.r * (2 * torch.rand(x.shape[0], device=x.device) - 1)

    def encodes(self, x: VolumeTensor):
        return type(x)(x.as_subclass(torch.Tensor) * self.factor.view(-1, *[1] * (x.ndim - 1)))


def permutable_axes(subject: Subject, tolerance: float = 0.01) -> tuple[int, ...]:
    """Spatial axes that share the most common voxel size (within ``tolerance``), LR factor and degradation role
    (`Subject.axis_roles`): safe to permute. Swapping a phase-encoded axis that lost k-space with a readout axis
    that kept it would teach the network to sharpen axes that were never blurred."""
    roles = subject.axis_roles or (None,) * subject.ndim
    keys = [(round(s / tolerance) * tolerance, f, r) for s, f, r in zip(subject.spacing, subject.factors, roles)]
    best = max(set(keys), key=keys.count)
    axes = tuple(a for a, k in enumerate(keys) if k == best)
    return axes if len(axes) > 1 else ()


# -- DataLoaders --------------------------------------------------------------------------------------------------

def sr_dataloaders(subjects: Sequence[Subject], valid_names: Sequence[str], patch_size=32,
                   patches_per_subject: int = 64, valid_patches_per_subject: int = 16, batch_size: int = 8,
                   augment: bool = True, degrade_on_the_fly: Degradation | None = None,
                   foreground_fraction: float = 0.9, seed: int = 0, device=None,
                   num_workers: int = 0, residual_sampling: bool = False, align: Sequence[int] | None = None):
    """fastai ``DataLoaders`` of paired patches from ``subjects``, split by subject: ``valid_names`` validate.

    ``patch_size``: HR patch in voxels (int or per axis; ``None`` for whole images). ``patches_per_subject``:
    training patches per subject per epoch. ``degrade_on_the_fly``: subjects prepared without a degradation
    get it applied to each batch on ``device`` (`DegradeBatch`). Returns ``(dls, sampler)``; pass
    ``mrisr.training.callbacks.ResamplePatches(sampler)`` to the Learner so patches move every epoch. With
    ``num_workers=0`` and a CUDA ``device``, patches are cut on the GPU. ``align``: patch starts per axis
    (`PatchSampler`).
    """
    names = [s.name for s in subjects]
    unknown = sorted(set(valid_names) - set(names))
    if unknown:
        raise ValueError(f"validation cases {unknown} are not among the subjects {names}")
    if not valid_names:
        raise ValueError("no validation subjects: name at least one "
                         "(or hold out a slab with mrisr.data.cases.split_slabs)")
    if set(valid_names) == set(names):
        raise ValueError("every subject is in validation: keep at least one for training")
    sampler = PatchSampler(subjects, patch_size, foreground_fraction, seed,
                           device=device if not num_workers else None,  # worker processes cannot use CUDA
                           residual_sampling=residual_sampling, align=align)
    valid = set(valid_names)
    items = [PatchRef(i, k, s.name in valid) for i, s in enumerate(subjects)
             for k in range(valid_patches_per_subject if s.name in valid else patches_per_subject)]
    ndim = subjects[0].ndim
    batch_tfms = []
    if degrade_on_the_fly is not None:
        batch_tfms.append(DegradeBatch(degrade_on_the_fly, subjects[0].spacing, subjects[0].phase_encoding_axes))
    if augment:
        batch_tfms += [RandomFlipPermute(ndim, permutable=permutable_axes(subjects[0])), RandomIntensityScale()]
    block = DataBlock(blocks=(VolumeBlock(LRVolume), VolumeBlock(HRVolume)), get_items=lambda _: items,
                      get_x=lambda ref: sampler.lr_patch(ref),
                      get_y=lambda ref: sampler.hr_patch(ref), splitter=FuncSplitter(lambda ref: ref.valid),
                      batch_tfms=batch_tfms, n_inp=1)
    dls = block.dataloaders(None, bs=batch_size, num_workers=num_workers, device=device, shuffle=True)
    return dls, sampler
