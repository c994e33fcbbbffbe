"""The steps of a simulated low-resolution acquisition, one class per physical effect, each acting on the last
``ndim`` axes of a torch tensor (`mrisr.physics.degrade.Degradation` chains them and applies them to volumes and
arrays).

Physics of each step, in k-space terms:

* `KSpaceTruncation`: an acquisition that samples only the central part of k-space (fewer phase-encoding lines,
  hence shorter): resolution drops and sharp edges ring (Gibbs). A window trades the ringing for blur.
* `GaussianBlur`: a smooth point-spread function, e.g. the effect of T2 decay or a deliberately soft kernel.
* `Downsample` / `Upsample`: a coarser voxel grid (with anti-aliasing) and the way back to the fine grid.
* `SliceThickness`: thick slices: each acquired slice averages a slab of the fine slices.
* `RicianNoise`: thermal noise on the complex signal, seen in a magnitude image (Gudbjartsson and Patz 1995).
* `Quantise`: integer pixel values, as scanners store them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import windows

from mrisr.imaging.filtering import gaussian_filter
from mrisr.imaging.noise import signal_level


PHASE_ENCODING = "phase_encoding"


FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548: full width at half maximum of a Gaussian, in sigmas


SINC_FWHM = 1.2067  # FWHM of the point response of a k-space band of width 1/d, in units of d


@dataclass
class Context:
    """What a step may need besides the tensor: voxel size (mm per spatial axis), phase-encoding axes, random source,
    the scan's noise level (`mrisr.imaging.noise.noise_sigma`, for ``RicianNoise(snr="scan")``), and ``record``, where a
    step writes what it chose (the noise level drawn)."""

    spacing: tuple[float, ...] | None
    phase_encoding_axes: tuple[int, ...] | None
    generator: torch.Generator | None
    noise_sigma: float | None = None
    record: dict = dataclasses.field(default_factory=dict)


def per_axis(value, n: int, what: str) -> tuple:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * n
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} values for {n} axes")
    return values


class Step:
    """One degradation step. Subclasses are dataclasses; their fields are their whole JSON description."""

    axes = None  # None: all spatial axes; "phase_encoding": the scan's phase-encoding axes; or a tuple of axes

    def resolve_axes(self, ndim: int, ctx: Context) -> tuple[int, ...]:
        if self.axes is None:
            return tuple(range(ndim))
        if self.axes == PHASE_ENCODING:
            if ctx.phase_encoding_axes is None:
                raise ValueError(f"{type(self).__name__} acts along the phase-encoding axes, which this input does "
                                 "not record: pass phase_encoding_axes=(...) or set axes= explicitly")
            return tuple(ctx.phase_encoding_axes)
        return tuple(self.axes)

    def apply(self, x: torch.Tensor, ctx: Context, ndim: int) -> torch.Tensor:
        raise NotImplementedError

    def index_map(self, axis: int, n_in: int, n_out: int, ctx: Context, ndim: int) -> tuple[float, float]:
        """``(a, b)``: output index ``i`` along spatial ``axis`` sits at input index ``a * i + b``."""
        return 1.0, 0.0

    def to_dict(self) -> dict:
        return {"step": type(self).__name__, **dataclasses.asdict(self)}

    def thickness_after(self, thickness: float, spacing: float) -> float | None:
        """The slice thickness (mm) after this step acts along the slice axis, from the thickness and the slice
        spacing (mm) before it; ``None`` when the step changes the slice profile in a way not tracked."""
        return None

    def axis_key(self, axis: int, ndim: int, ctx: Context):
        """What this step does along spatial ``axis``: ``None`` if nothing, else a hashable description (its name and
        parameters, per-axis values picked for this axis). Two axes with equal keys in every step are degraded alike,
        so swapping them (augmentation) keeps a training pair a valid example of the degradation."""
        axes = self.resolve_axes(ndim, ctx)
        if axis not in axes:
            return None
        values = []
        for f in dataclasses.fields(self):
            if f.name == "axes":
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple) and len(value) == len(axes):
                value = value[axes.index(axis)]
            values.append((f.name, value))
        return type(self).__name__, tuple(values)

    def _check_axes(self, ndim: int):
        if isinstance(self.axes, tuple) and any(not 0 <= a < ndim for a in self.axes):
            raise ValueError(f"{type(self).__name__}: axes {self.axes} outside the {ndim} spatial axes 0..{ndim - 1}")


def _tuple_or_keyword(axes):
    return axes if axes is None or axes == PHASE_ENCODING else tuple(int(a) for a in np.atleast_1d(axes))


@dataclass
class KSpaceTruncation(Step):
    """Keep the central ``fraction`` of k-space along ``axes``: a lower-resolution (faster) Cartesian acquisition.

    Along each axis the central ``m = round(fraction * n)`` k-space samples are kept (index ``n // 2`` is k = 0),
    optionally tapered by a ``"hann"`` or ``"tukey"`` window (``tukey_alpha``: tapered fraction), which lowers the
    Gibbs ringing at the cost of more blur. ``same_grid=True`` zero-fills back to ``n`` samples (the image keeps its
    grid; the seed-000 knee setting); ``False`` returns the ``m``-sample image (voxels ``n / m`` times larger, same
    intensity scale). The image is a magnitude image (``output="magnitude"``) unless ``output="complex"``.
    """

    fraction: float | tuple[float, ...] = 0.5
    axes: str | tuple[int, ...] = PHASE_ENCODING
    window: str | None = None
    tukey_alpha: float = 0.5
    same_grid: bool = True
    output: str = "magnitude"

    def __post_init__(self):
        self.axes = _tuple_or_keyword(self.axes)
        self.fraction = tuple(self.fraction) if isinstance(self.fraction, (list, tuple)) else float(self.fraction)
        if any(not 0 < f <= 1 for f in np.atleast_1d(self.fraction)):
            raise ValueError(f"KSpaceTruncation: fraction must be in (0, 1], got {self.fraction}")
        if self.window not in (None, "hann", "tukey"):
            raise ValueError(f"KSpaceTruncation: window must be None, 'hann' or 'tukey', got {self.window!r}")
        if self.output not in ("magnitude", "complex"):
            raise ValueError(f"KSpaceTruncation: output must be 'magnitude' or 'complex', got {self.output!r}")

    def kept(self, axis: int, n: int, ndim: int, ctx: Context) -> int:
        axes = self.resolve_axes(ndim, ctx)
        return max(1, round(per_axis(self.fraction, len(axes), "fraction")[axes.index(axis)] * n))

    def _window(self, m: int) -> np.ndarray:
        if self.window == "hann":
            return windows.hann(m, sym=True) if m > 2 else np.ones(m)
        if self.window == "tukey":
            return windows.tukey(m, self.tukey_alpha, sym=True)
        return np.ones(m)

    def band_window(self, n: int, m: int) -> np.ndarray:
        """The acquisition window over all ``n`` centred k-space samples: the ``m``-sample window on the kept band
        (index ``n // 2`` is k = 0), 0 elsewhere."""
        profile = np.zeros(n)
        start = n // 2 - m // 2
        profile[start:start + m] = self._window(m)
        return profile

    def apply(self, x, ctx, ndim):
        axes = self.resolve_axes(ndim, ctx)
        dims = [x.ndim - ndim + a for a in axes]
        k = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho"), dim=dims)
        scale = 1.0
        for axis, dim in zip(axes, dims):
            n = x.shape[dim]
            m = self.kept(axis, n, ndim, ctx)
            if self.same_grid:
                profile = self.band_window(n, m)
            else:
                k = k.narrow(dim, n // 2 - m // 2, m)
                profile, scale = self._window(m), scale * np.sqrt(m / n)
            shape = [1] * k.ndim
            shape[dim] = -1
            k = k * torch.as_tensor(profile, dtype=k.real.dtype, device=k.device).view(shape)
        image = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims, norm="ortho"), dim=dims)
        image = image * scale
        return image.abs() if self.output == "magnitude" else image

    def index_map(self, axis, n_in, n_out, ctx, ndim):
        if n_in == n_out:
            return 1.0, 0.0
        a = n_in / n_out  # the centre voxel (n // 2) stays where it is
        return a, n_in // 2 - a * (n_out // 2)


@dataclass
class GaussianBlur(Step):
    """Convolve with a Gaussian point-spread function of width ``sigma`` along ``axes``.

    ``sigma`` (one value, or one per axis in ``axes``) is in ``units`` of ``"voxel"`` or ``"mm"`` (the latter needs the
    voxel spacing). Its full width at half maximum is ``2.3548 * sigma``. Borders are mirrored (scipy's "reflect").
    """

    sigma: float | tuple[float, ...] = 1.0
    units: str = "voxel"
    axes: str | tuple[int, ...] | None = None
    truncate: float = 4.0

    def __post_init__(self):
        self.axes = _tuple_or_keyword(self.axes)
        self.sigma = tuple(self.sigma) if isinstance(self.sigma, (list, tuple)) else float(self.sigma)
        if not all(s >= 0 for s in np.atleast_1d(self.sigma)):  # NaN fails too
            raise ValueError(f"GaussianBlur: sigma must be >= 0, got {self.sigma}")
        if self.units not in ("voxel", "mm"):
            raise ValueError(f"GaussianBlur: units must be 'voxel' or 'mm', got {self.units!r}")

    def apply(self, x, ctx, ndim):
        axes = self.resolve_axes(ndim, ctx)
        sigma = [0.0] * ndim
        for axis, s in zip(axes, per_axis(self.sigma, len(axes), "sigma")):
            if self.units == "mm":
                if ctx.spacing is None:
                    raise ValueError("GaussianBlur: sigma is in mm but the input has no spacing; pass spacing=(...)")
                s = s / ctx.spacing[axis]
            sigma[axis] = s
        return gaussian_filter(x, sigma, self.truncate)


class _Resample(Step):
    """Shared by `Downsample` and `Upsample`: an integer ``factor`` per axis of ``axes`` and a ``method``."""

    methods: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        name = type(self).__name__
        self.axes = _tuple_or_keyword(self.axes)
        self.factor = _int_factor(self.factor, name)
        if self.method not in self.methods:
            raise ValueError(f"{name}: method must be one of {self.methods}, got {self.method!r}")

    def factors(self, ndim, ctx) -> dict[int, int]:
        axes = self.resolve_axes(ndim, ctx)
        return dict(zip(axes, per_axis(self.factor, len(axes), "factor")))


@dataclass
class Downsample(_Resample):
    """Anti-aliased downsampling by an integer ``factor`` along ``axes`` (the size must be a multiple of it).

    ``method="area"``: each output voxel is the mean of a ``factor``-long block (a bigger voxel, what a scanner with
    coarser voxels would measure). ``method="bicubic"``: the Keys cubic (a = -0.5) widened by ``factor``, the
    anti-aliased bicubic of PIL, MATLAB ``imresize`` and ``torch`` (``antialias=True``), applied axis by axis.
    Output voxel ``i`` is centred at input position ``factor * i + (factor - 1) / 2``.
    """

    methods: ClassVar[tuple[str, ...]] = ("area", "bicubic")
    factor: int | tuple[int, ...] = 2
    method: str = "area"
    axes: tuple[int, ...] | None = None

    def apply(self, x, ctx, ndim):
        for axis, f in self.factors(ndim, ctx).items():
            dim = x.ndim - ndim + axis
            n = x.shape[dim]
            if n % f:
                raise ValueError(f"Downsample: spatial axis {axis} has {n} voxels, not a multiple of the factor {f}; "
                                 f"crop or pad the input to a multiple of {f}")
            if self.method == "area":
                x = x.unflatten(dim, (n // f, f)).mean(dim + 1)
            else:
                x = resize_axis(x, dim, n // f, "bicubic", antialias=True)
        return x

    def index_map(self, axis, n_in, n_out, ctx, ndim):
        f = self.factors(ndim, ctx).get(axis, 1)
        return float(f), (f - 1) / 2

    def thickness_after(self, thickness, spacing):
        if self.method != "area":
            return None
        return thickness + (self.factors(3, Context(None, None, None)).get(0, 1) - 1) * spacing


@dataclass
class Upsample(_Resample):
    """Back to a finer grid: ``factor`` times more voxels along ``axes``, the inverse geometry of `Downsample`.

    ``method``: ``"nearest"`` (each voxel repeated), ``"linear"`` or ``"bicubic"`` (Keys, a = -0.75, as
    ``torch.nn.functional.interpolate``), with voxel areas aligned (``align_corners=False``).
    """

    methods: ClassVar[tuple[str, ...]] = ("nearest", "linear", "bicubic")
    factor: int | tuple[int, ...] = 2
    method: str = "linear"
    axes: tuple[int, ...] | None = None

    def apply(self, x, ctx, ndim):
        for axis, f in self.factors(ndim, ctx).items():
            dim = x.ndim - ndim + axis
            if self.method == "nearest":
                x = x.repeat_interleave(f, dim=dim)
            else:
                x = resize_axis(x, dim, x.shape[dim] * f, self.method, antialias=False)
        return x

    def index_map(self, axis, n_in, n_out, ctx, ndim):
        f = self.factors(ndim, ctx).get(axis, 1)
        return 1.0 / f, (1.0 / f - 1) / 2

    def thickness_after(self, thickness, spacing):
        return thickness  # interpolation between slices adds no measured signal from further away


def _mirror_ends(x: torch.Tensor, dim: int, margin: int, step: str) -> torch.Tensor:
    """``x`` with ``margin`` slices mirrored onto each end along ``dim`` (scipy's "reflect": the edge slice repeats)."""
    if x.shape[dim] < margin:
        raise ValueError(f"{step}: {x.shape[dim]} slices are too few to mirror {margin} at each end")
    return torch.cat([x.narrow(dim, 0, margin).flip(dim), x, x.narrow(dim, x.shape[dim] - margin, margin).flip(dim)],
                     dim)


@dataclass
class SliceThickness(Step):
    """Thick slices: each output slice averages ``thickness`` consecutive input slices (a rectangular slice profile),
    and slices are ``stride`` input slices apart (default ``thickness``: contiguous slices, no gap or overlap).

    Acts on spatial axis 0: the slice axis of a volume, or of a through-plane image (slice, row) in 2D. Output slice
    ``i`` is centred on input slice ``stride * i + (thickness - 1) / 2``; with ``centred=True`` it is centred on
    the ``i``-th block of ``stride`` input slices instead (``stride * i + (stride - 1) / 2``, the input mirrored at
    its ends where a slice reaches beyond them; ``thickness - stride`` even): slices with a gap (``thickness <
    stride``) or an overlap keep the grid of contiguous ones, ``n // stride`` of them. A slice ``d`` mm thick made of
    fine slices ``s`` mm apart is ``d + (thickness - 1) * s`` mm thick (``Volume.meta["slice_thickness_mm"]``
    follows).
    """

    thickness: int = 2
    stride: int | None = None
    centred: bool = False

    def resolve_axes(self, ndim, ctx):
        return (0,)

    def thickness_after(self, thickness: float, spacing: float) -> float:
        return thickness + (self.thickness - 1) * spacing

    def __post_init__(self):
        self.thickness = _int_factor(self.thickness, "SliceThickness")
        self.stride = self.thickness if self.stride is None else _int_factor(self.stride, "SliceThickness")
        if self.centred and (self.thickness - self.stride) % 2:
            raise ValueError(f"SliceThickness: centred slices need thickness - stride even, got {self.thickness} "
                             f"and {self.stride}")

    def apply(self, x, ctx, ndim):
        dim = x.ndim - ndim
        margin = (self.thickness - self.stride) // 2 if self.centred else 0
        if margin > 0:  # so that the first and last slices reach beyond the input
            x = _mirror_ends(x, dim, margin, "SliceThickness")
        elif margin < 0:  # a gap: the first slice starts inside the input
            x = x.narrow(dim, -margin, max(0, x.shape[dim] + 2 * margin))
        if x.shape[dim] < self.thickness:
            raise ValueError(f"SliceThickness: {x.shape[dim]} slices cannot make a {self.thickness}-slice slab")
        return x.unfold(dim, self.thickness, self.stride).mean(-1)

    def index_map(self, axis, n_in, n_out, ctx, ndim):
        if axis != 0:
            return 1.0, 0.0
        return float(self.stride), ((self.stride if self.centred else self.thickness) - 1) / 2


PROFILES = ("rect", "gaussian")


@dataclass
class SliceProfile(Step):
    """Slices with a profile: output slice ``i`` is the profile-weighted mean of the input slices around the centre of
    the ``i``-th block of ``stride`` input slices (``stride * i + (stride - 1) / 2``), ``n // stride`` slices.

    ``shape="rect"``: a box ``width`` input slices wide, its fractional ends weighted by their overlap (an ideal
    slice-selective pulse); ``"gaussian"``: a Gaussian of FWHM ``width`` (the smooth profile of a real, truncated
    sinc pulse; Han et al., "ESPRESO: slice profile estimation for MRI", 2023, model slice profiles so). ``width``
    below ``stride`` leaves a gap between slices, above it an overlap. The input is mirrored at its ends
    (`_mirror_ends`) where a profile reaches beyond them. With an integer ``width`` and ``width - stride`` even, the
    rect profile is `SliceThickness` ``(width, stride, centred=True)``. Acts on spatial axis 0, as `SliceThickness`.
    """

    width: float = 2.0
    stride: int = 2
    shape: str = "rect"

    def __post_init__(self):
        self.width, self.stride = float(self.width), _int_factor(self.stride, "SliceProfile")
        if not self.width > 0:
            raise ValueError(f"SliceProfile: width must be > 0 input slices, got {self.width}")
        if self.shape not in PROFILES:
            raise ValueError(f"SliceProfile: shape must be one of {PROFILES}, got {self.shape!r}")

    def resolve_axes(self, ndim, ctx):
        return (0,)

    def thickness_after(self, thickness: float, spacing: float) -> float:
        return thickness + (self.width - 1) * spacing

    def weights(self) -> torch.Tensor:
        """The profile over the ``stride + 2 m`` input slices one output slice sees (``m`` beyond its block on each
        side), summing to 1."""
        sigma = self.width / FWHM_PER_SIGMA
        reach = self.width / 2 + 0.5 if self.shape == "rect" else 3 * sigma
        margin = max(0, math.ceil(reach - (self.stride - 1) / 2))
        u = torch.arange(-margin, self.stride + margin, dtype=torch.float64) - (self.stride - 1) / 2
        if self.shape == "rect":
            w = (torch.minimum(u + 0.5, torch.tensor(self.width / 2))
                 - torch.maximum(u - 0.5, torch.tensor(-self.width / 2))).clamp(0, 1)
        else:
            w = torch.exp(-u ** 2 / (2 * sigma ** 2))
        return w / w.sum()

    def apply(self, x, ctx, ndim):
        dim = x.ndim - ndim
        w = self.weights().to(x.dtype if x.is_floating_point() else torch.float32).to(x.device)
        margin = (len(w) - self.stride) // 2
        if margin:
            x = _mirror_ends(x, dim, margin, "SliceProfile")
        if x.shape[dim] < len(w):
            raise ValueError(f"SliceProfile: {x.shape[dim]} slices cannot make one {self.stride}-slice block")
        return x.unfold(dim, len(w), self.stride) @ w

    def index_map(self, axis, n_in, n_out, ctx, ndim):
        return (1.0, 0.0) if axis != 0 else (float(self.stride), (self.stride - 1) / 2)


SCAN = "scan"  # RicianNoise's snr: the scan's own noise level (`mrisr.imaging.noise.noise_sigma`)


@dataclass
class RicianNoise(Step):
    """Thermal noise: a new realisation of complex Gaussian noise, seen in a magnitude image (Gudbjartsson and Patz,
    MRM 1995), independent of the noise the input already carries.

    Noise of standard deviation ``sigma`` is added to the real and imaginary channels of the (real) image and the
    magnitude is taken, so the noise is Rician (Rayleigh in air). ``snr``: ``"scan"`` (the default) for the input's
    own noise level (``sigma`` = `mrisr.imaging.noise.noise_sigma` of the whole scan, measured in its air before the
    first step: what a second acquisition of the same scan would carry), or a number, the ratio of each image's mean
    tissue signal (voxels above its `tissue_threshold`, on the input of this step) to ``sigma``. The ``sigma`` and
    SNR used are recorded (`Context.record`; a degraded `Volume`'s ``meta["noise"]``).

    Placed first in a chain, the noise passes through the acquisition model as a real scan's does: a k-space
    truncation keeps only its measured band, downsampling averages it.
    """

    snr: float | str = SCAN

    def __post_init__(self):
        if self.snr != SCAN:
            self.snr = float(self.snr)
            if not self.snr > 0:
                raise ValueError(f"RicianNoise: snr must be > 0 or {SCAN!r}, got {self.snr}")

    def apply(self, x, ctx, ndim):
        x = x.real if x.is_complex() else x
        signal = signal_level(x, ndim).view(*x.shape[:-ndim], *[1] * ndim)
        if self.snr == SCAN:
            if ctx.noise_sigma is None:
                raise ValueError("RicianNoise(snr='scan') needs the scan's noise level, which a patch or a batch of "
                                 "patches cannot show (no air): give snr a number")
            sigma = torch.full_like(signal, ctx.noise_sigma)
        else:
            sigma = signal / self.snr
        ctx.record["noise"] = {"sigma": float(sigma.mean()), "snr": float((signal / sigma).mean())}
        noise = torch.randn((2, *x.shape), generator=ctx.generator, device=x.device, dtype=x.dtype)
        return torch.sqrt((x + sigma * noise[0]) ** 2 + (sigma * noise[1]) ** 2)

    def thickness_after(self, thickness, spacing):
        return thickness


@dataclass
class Quantise(Step):
    """Round to multiples of ``step`` (1: integers), as a scanner storing integer pixel values does."""

    step: float = 1.0

    def __post_init__(self):
        self.step = float(self.step)
        if not self.step > 0:
            raise ValueError(f"Quantise: step must be > 0, got {self.step}")

    def apply(self, x, ctx, ndim):
        return torch.round(x / self.step) * self.step

    def thickness_after(self, thickness, spacing):
        return thickness


def _int_factor(value, name: str):
    values = np.atleast_1d(value)
    if any(int(v) != v or v < 1 for v in values):
        raise ValueError(f"{name}: factors must be positive integers, got {value}")
    return tuple(int(v) for v in values) if isinstance(value, (list, tuple)) else int(value)


def resize_axis(x: torch.Tensor, dim: int, size: int, mode: str, antialias: bool) -> torch.Tensor:
    """Resize one axis with ``torch.nn.functional.interpolate`` (``align_corners=False``)."""
    moved = x.movedim(dim, -1)
    lines = moved.reshape(-1, 1, 1, moved.shape[-1])
    out = F.interpolate(lines, size=(1, size), mode="bilinear" if mode == "linear" else mode,
                        align_corners=False, antialias=antialias)
    return out.reshape(*moved.shape[:-1], size).movedim(-1, dim)


STEPS = {cls.__name__: cls for cls in (KSpaceTruncation, GaussianBlur, Downsample, Upsample, SliceThickness,
                                       SliceProfile, RicianNoise, Quantise)}
MEASUREMENT_STEPS = (RicianNoise, Quantise)  # what measuring adds (noise, rounding): outside the forward model
