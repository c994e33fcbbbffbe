"""Simulated low-resolution acquisitions: a serialisable `Degradation` spec chaining the steps of `mrisr.physics.steps`
(importable from here too), and presets.

A `Degradation` is an ordered list of steps applied to the last ``ndim`` axes (the image axes) of a `Volume`, a numpy
array or a torch tensor (CPU or GPU, any leading batch axes). Spatial axes are numbered ``0 .. ndim - 1`` in the order
of the array; for a 3D degradation axis 0 is the slice axis of `mrisr.volume`. A 2D degradation applied to a
`Volume` works slice by slice on (row, column).

Physics of each step, in k-space terms (`mrisr.physics.steps`):

* `KSpaceTruncation`: an acquisition that samples only the central part of k-space (fewer phase-encoding lines,
  hence shorter): resolution drops and sharp edges ring (Gibbs). A window trades the ringing for blur.
* `GaussianBlur`: a smooth point-spread function, e.g. the effect of T2 decay or a deliberately soft kernel.
* `Downsample` / `Upsample`: a coarser voxel grid (with anti-aliasing) and the way back to the fine grid.
* `SliceThickness`: thick slices: each acquired slice averages a slab of the fine slices.
* `SliceProfile`: slices with a rect (fractional width) or Gaussian profile, with a gap or an overlap.
* `RicianNoise`: thermal noise on the complex signal, seen in a magnitude image (Gudbjartsson and Patz 1995).

``Degradation.to_json()`` / ``Degradation.from_json()`` round-trip a spec exactly; a given ``seed`` gives the same
output every time (noise is the only random step).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mrisr.errors import InputError
from mrisr.imaging.noise import NOISE_KEY, noise_sigma, scan_noise_sigma
from mrisr.physics.steps import (FWHM_PER_SIGMA, MEASUREMENT_STEPS, PHASE_ENCODING, SCAN, SINC_FWHM, STEPS, Context,
                                 Downsample, GaussianBlur, KSpaceTruncation, Quantise, RicianNoise, SliceProfile,
                                 SliceThickness, Step, Upsample, per_axis, resize_axis)
from mrisr.volume import Volume

__all__ = ["Degradation", "PRESETS", "preset", "load_degradation", "Context", "Step", "KSpaceTruncation",
           "GaussianBlur", "Downsample", "Upsample", "SliceThickness", "SliceProfile", "RicianNoise", "Quantise",
           "resize_axis", "noise_free"]


@dataclass
class Degradation:
    """An ordered list of `Step` s acting on the last ``ndim`` (2 or 3) axes: a simulated low-resolution scan.

    Call it on a `Volume` (returns a `Volume` whose affine follows any change of grid, with the spec recorded in
    ``meta["degradation"]``), a numpy array (returns float32 numpy) or a torch tensor (returns a tensor of the same
    dtype on the same device; computed in float32). Leading axes are a batch.

    Example: ``Degradation([Downsample(4, "bicubic"), GaussianBlur(1.0)], ndim=2)`` is the `cardiac_x4_noise_free`
    preset.
    """

    steps: list[Step]
    ndim: int = 3
    name: str = "custom"

    def __post_init__(self):
        if self.ndim not in (2, 3):
            raise ValueError(f"a Degradation acts on 2 or 3 spatial axes, not {self.ndim}")
        self.steps = [STEPS[s.pop("step")](**s) if isinstance(s, dict) else s for s in map(_copy, self.steps)]
        for step in self.steps:
            step._check_axes(self.ndim)

    # -- serialisation ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "ndim": self.ndim, "steps": [s.to_dict() for s in self.steps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, spec: dict) -> Degradation:
        unknown = [s.get("step") for s in spec["steps"] if s.get("step") not in STEPS]
        if unknown:
            raise ValueError(f"unknown degradation step(s) {unknown}; known: {', '.join(STEPS)}")
        return cls(spec["steps"], spec.get("ndim", 3), spec.get("name", "custom"))

    @classmethod
    def from_json(cls, text: str) -> Degradation:
        return cls.from_dict(json.loads(text))

    def size_multiple(self) -> tuple[int, ...]:
        """Per spatial axis, the number the input size must be a multiple of (the product of downsampling factors
        and slice strides), so that an upsampling step brings the image back to its original size."""
        multiple = [1] * self.ndim
        for step in self.steps:
            if isinstance(step, Downsample):
                for axis, f in step.factors(self.ndim, Context(None, None, None)).items():
                    multiple[axis] *= f
            elif isinstance(step, (SliceThickness, SliceProfile)):
                multiple[0] *= step.stride
        return tuple(multiple)

    def forward_model(self) -> Degradation:
        """The deterministic part of the acquisition model: this degradation without its noise and quantisation
        steps (the ``A`` of data consistency, `mrisr.physics.consistency`)."""
        return Degradation([s for s in self.steps if not isinstance(s, MEASUREMENT_STEPS)], self.ndim, self.name)

    def at_snr(self, snr: float) -> Degradation:
        """This degradation with its noise at a stated ``snr`` in place of the scan's own level (for a scan whose
        air cannot show its noise, `mrisr.imaging.noise.noise_sigma`)."""
        steps = [RicianNoise(snr) if isinstance(s, RicianNoise) and s.snr == SCAN else s for s in self.steps]
        return Degradation(steps, self.ndim, self.name)

    def needs_scan_noise(self) -> bool:
        """Whether a step adds noise at the scan's own level (``RicianNoise(snr="scan")``), which must be measured
        on the whole scan (`mrisr.imaging.noise.noise_sigma`) before the steps run."""
        return any(isinstance(s, RicianNoise) and s.snr == SCAN for s in self.steps)

    def axis_roles(self, spacing: Sequence[float] | None = None,
                   phase_encoding_axes: Sequence[int] | None = None) -> tuple:
        """Per spatial axis, a hashable description of what every step does along it (`Step.axis_key`): axes with
        equal roles are degraded alike."""
        ctx = Context(None if spacing is None else tuple(spacing),
                      None if phase_encoding_axes is None else tuple(phase_encoding_axes), None)
        return tuple(tuple(step.axis_key(axis, self.ndim, ctx) for step in self.steps) for axis in range(self.ndim))

    def volume_axes(self, volume: Volume) -> tuple[tuple[float, ...], tuple[int, ...] | None]:
        """``(spacing, phase_encoding_axes)`` of ``volume`` in this degradation's spatial axes (the last ``ndim`` of
        the volume's three): what `apply_tensor` needs to degrade the volume's array as it degrades the volume."""
        first = 3 - self.ndim  # first volume axis the degradation acts on
        pe = volume.meta.get("phase_encoding_axes")
        pe = None if pe is None else tuple(int(a) - first for a in pe if int(a) >= first)
        return tuple(volume.spacing[first:]), pe

    def slice_thickness(self, thickness: float, spacing: float, phase_encoding_axes=None) -> float | None:
        """The slice thickness (mm) of a volume degraded by this 3D degradation, from the volume's slice
        ``thickness`` and slice ``spacing`` (mm); ``None`` when a step changes the slice profile in a way not tracked
        (`Step.thickness_after`). A 2D degradation leaves the slices as they are."""
        if self.ndim == 2:
            return thickness
        ctx = Context(None, None if phase_encoding_axes is None else tuple(phase_encoding_axes), None)
        for step in self.steps:
            if 0 not in step.resolve_axes(self.ndim, ctx):
                continue
            thickness = step.thickness_after(thickness, spacing)
            if thickness is None:
                return None
            spacing *= step.index_map(0, 1, 1, ctx, self.ndim)[0]
        return thickness

    # -- application --------------------------------------------------------------------------------------------
    def __call__(self, x, *, spacing: Sequence[float] | None = None,
                 phase_encoding_axes: Sequence[int] | None = None, seed: int | torch.Generator | None = None):
        """Degrade ``x``. ``spacing``: mm per spatial axis (arrays; a Volume brings its own). ``phase_encoding_axes``:
        spatial axes that were phase encoded (a Volume takes them from its metadata). ``seed``: an int or a
        ``torch.Generator`` for reproducible noise; ``None`` draws from torch's global generator."""
        if isinstance(x, Volume):
            return self._apply_volume(x, seed)
        if isinstance(x, np.ndarray):
            out, _ = self.apply_tensor(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), spacing,
                                       phase_encoding_axes, seed)
            return out.numpy()
        if isinstance(x, torch.Tensor):
            return self.apply_tensor(x, spacing, phase_encoding_axes, seed)[0]
        raise TypeError(f"cannot degrade a {type(x).__name__}; give a Volume, numpy array or torch tensor")

    def apply_tensor(self, x: torch.Tensor, spacing=None, phase_encoding_axes=None, seed=None, noise_level=None,
                     record: dict | None = None):
        """Degrade a tensor ``(..., *spatial)``; returns it and the per-axis index maps ``[(a, b), ...]`` (output
        index ``i`` along a spatial axis lies at input index ``a * i + b``). ``noise_level``: the scan's noise
        standard deviation for ``RicianNoise(snr="scan")`` (default: `mrisr.imaging.noise.noise_sigma` of ``x`` taken as
        one scan); ``record``: a dict the steps write what they drew into (the noise level)."""
        if x.ndim < self.ndim:
            raise ValueError(f"this Degradation acts on the last {self.ndim} axes ({_axis_names(self.ndim)}), but got "
                             f"a {x.ndim}D array of shape {tuple(x.shape)}")
        if isinstance(seed, torch.Generator) or seed is None:
            generator = seed
        else:
            generator = torch.Generator(device=x.device).manual_seed(int(seed))
        if spacing is not None:
            spacing = tuple(float(s) for s in per_axis(tuple(spacing), self.ndim, "spacing"))
        pe = tuple(int(a) for a in phase_encoding_axes) if phase_encoding_axes is not None else None
        if pe is not None and any(not 0 <= a < self.ndim for a in pe):
            raise ValueError(f"phase_encoding_axes {pe} outside the {self.ndim} spatial axes")
        if noise_level is None and self.needs_scan_noise():
            noise_level = noise_sigma(x.detach().abs().cpu().numpy())
        ctx = Context(spacing, pe, generator, noise_level, {} if record is None else record)
        dtype = x.dtype
        y = x.float() if not (x.is_complex() or x.dtype == torch.float64) else x
        maps = [(1.0, 0.0)] * self.ndim
        for step in self.steps:
            shape_in = y.shape[-self.ndim:]
            y = step.apply(y, ctx, self.ndim)
            for axis in range(self.ndim):
                a, b = step.index_map(axis, shape_in[axis], y.shape[y.ndim - self.ndim + axis], ctx, self.ndim)
                a0, b0 = maps[axis]
                maps[axis] = (a0 * a, a0 * b + b0)
                if ctx.spacing is not None and a != 1:
                    ctx.spacing = tuple(s * a if k == axis else s for k, s in enumerate(ctx.spacing))
        if not y.is_complex():
            y = y.to(dtype)
        return y, maps

    def _apply_volume(self, volume: Volume, seed) -> Volume:
        first = 3 - self.ndim  # first volume axis the degradation acts on
        record = {}
        try:
            level = scan_noise_sigma(volume) if self.needs_scan_noise() else None
            data, maps = self.apply_tensor(torch.from_numpy(volume.data), *self.volume_axes(volume), seed, level,
                                           record)
        except InputError as err:
            raise InputError(err.path, f"{self.name} degradation: {err.problem}") from None
        except ValueError as err:
            raise InputError(volume.meta.get("source_path"), f"{self.name} degradation: {err}") from None
        affine = volume.resampled_affine({first + axis: ab for axis, ab in enumerate(maps)})
        data = data.abs() if data.is_complex() else data
        meta = {**volume.meta, "degradation": self.to_json(), **record}
        if record or self.forward_model().steps:  # the scan's own noise level no longer describes the output
            meta.pop(NOISE_KEY, None)
        thickness = meta.pop("slice_thickness_mm", None)
        if thickness is not None:
            thickness = self.slice_thickness(float(thickness), volume.spacing[0], volume.meta.get("phase_encoding_axes"))
        return Volume(data.numpy(), affine, meta | ({} if thickness is None else {"slice_thickness_mm": thickness}))


def _copy(step):
    return dict(step) if isinstance(step, dict) else step


def _axis_names(ndim: int) -> str:
    return "slice, row, column" if ndim == 3 else "row, column"


# -- presets --------------------------------------------------------------------------------------------------------
#
# Every preset is noisy by default: a new realisation of the scan's own thermal noise (``RicianNoise(snr="scan")``,
# independent of the noise the reference carries) enters first and passes through the acquisition model, as a
# second, faster acquisition's noise would. Without it the degraded input holds the reference's own noise in the
# measured band, so data consistency copies that noise back for free and every score is an upper bound (the inverse
# crime). ``snr`` sets another level; ``noise=False`` (the ``*_noise_free`` presets) is for tests of exact
# properties; ``quantise=True`` rounds the input to integers, as a scanner stores it.

def _noisy(steps: list[Step], noise: bool, snr: float | str, quantise: bool) -> list[Step]:
    return [RicianNoise(snr=snr)] * noise + steps + [Quantise(1.0)] * quantise


def knee_fast_acquisition(fraction: float = 0.5, noise: bool = True, snr: float | str = SCAN,
                          quantise: bool = False) -> Degradation:
    """Seed 000: a lower-resolution 3D acquisition: the central ``fraction`` of k-space along both phase-encoding
    axes, zero-filled back to the original grid as a scanner does for display, with noise (see above).

    Half by default: a quarter of the phase-encoding lines, 4x fewer than the reference measured. The readout axis
    is untouched (it costs no scan time). The result is blurred along the phase-encoding axes and rings at sharp
    edges (Gibbs). What it removes depends on what the reference holds: the DESS sample was itself measured only to
    62.5 % of Nyquist along its in-plane phase-encoding axis (zero-filled by the scanner), so on it this removes the
    50-62.5 % band in-plane and the outer half along the slice axis, where 96 % of the removed energy lies: on that
    scan the experiment is mostly 2x super-resolution along the slice axis, not a 4x shorter scan.
    """
    steps = [KSpaceTruncation(fraction=fraction, axes=PHASE_ENCODING, same_grid=True)]
    return Degradation(_noisy(steps, noise, snr, quantise), ndim=3, name=_name("knee_fast_acquisition", noise))


def knee_fast_acquisition_blur(fraction: float = 0.5, noise: bool = True, snr: float | str = SCAN,
                               quantise: bool = False) -> Degradation:
    """The Gaussian-blur counterpart of `knee_fast_acquisition`: no ringing, the same width of the point response.

    A Gaussian along the phase-encoding axes whose FWHM equals that of the truncated acquisition's sinc point
    response, ``1.2067 / fraction`` voxels (sigma = 1.025 voxels for half of k-space), after the noise. Many
    super-resolution papers use such a blur. Noise-free it removes no frequency outright (the Gaussian's transfer
    function never reaches zero), so a deconvolution undoes it almost exactly; with noise, the frequencies it
    attenuates below the noise are lost, as in a real scan.
    """
    sigma = SINC_FWHM / fraction / FWHM_PER_SIGMA
    steps = [GaussianBlur(sigma=sigma, units="voxel", axes=PHASE_ENCODING)]
    return Degradation(_noisy(steps, noise, snr, quantise), ndim=3, name=_name("knee_fast_acquisition_blur", noise))


CARDIAC_SNR = 20.0


def cardiac_x4(noise: bool = True, snr: float | str = CARDIAC_SNR, quantise: bool = False) -> Degradation:
    """Seed 001: 2D x4 super-resolution of cine slices, on a reduced grid.

    Each (row, column) slice, with noise (see above), is downsampled x4 with anti-aliased bicubic (the
    image-library definition), then blurred with a Gaussian of sigma 1.0 low-resolution pixel, for a softer input
    than bicubic alone. The noise has a stated SNR of 20 (tissue signal over sigma, on the high-resolution slice):
    public cine data come cropped around the heart and rescaled to 8 bits, with too little air, or air clipped to
    zero, to read their own noise from (`mrisr.imaging.noise.noise_sigma` refuses them); ``snr="scan"`` reads it where
    the air allows.
    """
    steps = [Downsample(factor=4, method="bicubic"), GaussianBlur(sigma=1.0, units="voxel")]
    return Degradation(_noisy(steps, noise, snr, quantise), ndim=2, name=_name("cardiac_x4", noise))


def knee_thick_slices(factor: int = 3, noise: bool = True, snr: float | str = SCAN,
                      quantise: bool = False) -> Degradation:
    """Thick slices: ``factor`` consecutive slices averaged into one (a rectangular slice profile ``factor`` times
    thicker, no gap), then cubic interpolation back onto the original slice grid along the slice axis (axis 0),
    with noise (see above) before the averaging.

    What a faster 2D multi-slice protocol with thicker slices gives; the network then sees the cubic-interpolated
    thick-slice scan on the original grid. The slice count must be a multiple of ``factor``.
    """
    steps = [SliceThickness(thickness=factor), Upsample(factor=factor, method="bicubic", axes=(0,))]
    return Degradation(_noisy(steps, noise, snr, quantise), ndim=3, name=_name("knee_thick_slices", noise))


NOISE_FREE = "_noise_free"


def _name(name: str, noise: bool) -> str:
    return name if noise else name + NOISE_FREE


def noise_free(name: str) -> str:
    """The name of the noise-free variant of preset ``name``."""
    return name if name.endswith(NOISE_FREE) else name + NOISE_FREE


_MAKERS = (knee_fast_acquisition, knee_fast_acquisition_blur, knee_thick_slices, cardiac_x4)
PRESETS = {**{f.__name__: f for f in _MAKERS},
           **{noise_free(f.__name__): (lambda f=f: f(noise=False)) for f in _MAKERS}}


def preset(name: str) -> Degradation:
    """The named preset: ``knee_fast_acquisition``, ``knee_fast_acquisition_blur``, ``knee_thick_slices`` or
    ``cardiac_x4`` (noisy), or the same name ending in ``_noise_free``."""
    if name not in PRESETS:
        raise ValueError(f"unknown degradation preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def load_degradation(spec: str | dict | Degradation) -> Degradation:
    """A `Degradation` from a preset name, a JSON file holding `Degradation.to_dict`, a dict, or itself."""
    if isinstance(spec, Degradation):
        return spec
    if isinstance(spec, dict):
        return Degradation.from_dict(spec)
    if spec in PRESETS:
        return preset(spec)
    path = Path(spec)
    if not path.is_file():
        raise InputError(path, f"neither a degradation preset ({', '.join(PRESETS)}) nor a JSON spec file")
    try:
        return Degradation.from_json(path.read_text())
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(path, f"not a valid degradation spec ({type(err).__name__}: {err})") from None
