"""Self-supervised super-resolution of one anisotropic scan, from the scan alone: SMORE.

Zhao C, Dewey BE, Pham DL, Calabresi PA, Reich DS, Prince JL. "SMORE: a self-supervised anti-aliasing and
super-resolution algorithm for MRI using deep learning." IEEE Transactions on Medical Imaging 40(3): 805-817, 2021.

A scan with thick slices (a 2D multi-slice protocol: 0.3-0.5 mm in-plane, 1.5-6 mm slices) is sharp in-plane, and
blurred by the slice profile and aliased by the slice spacing through-plane. Its own in-plane images show the
anatomy at fine resolution; degrading them along one in-plane axis as the slices degrade the slice axis makes
training pairs, with no other scan:

1. **Slice profile** (`slice_geometry`): slice spacing ``s`` and thickness ``d`` (mm) from the `Volume`
   (``meta["slice_thickness_mm"]``, else the spacing: contiguous slices) or given, ``d < s`` a gap and ``d > s`` an
   overlap; a rect profile ``d`` wide or a Gaussian of FWHM ``d`` (`mrisr.physics.degrade.SliceProfile`). The network
   works on slices ``t = s / k`` apart (``k`` an integer; default: the in-plane spacing, rounded so that it divides
   ``s``); a requested output spacing that does not divide ``s`` is reached by resampling that grid.
2. **Training pairs** (`training_volumes`, `training_degradation`): each in-plane image is resampled along one
   in-plane axis onto the output grid ``t`` (anti-aliased bicubic: the target, a slice about ``t`` thick). That axis
   is then weighted by the profile ``d / t`` samples wide every ``k`` samples (`mrisr.physics.degrade.SliceProfile`: the
   blur of the profile and the aliasing of sampling every ``s`` mm) and brought back onto the ``t`` grid by cubic
   interpolation (`mrisr.physics.degrade.Upsample`), exactly as the scan's slice axis is at inference. Both in-plane
   axes take the degraded role in turn. SMORE trains two networks on such pairs, one that removes the aliasing (its
   "SAA": input sampled and interpolated, target only blurred) and one that removes the blur ("SSR"), and applies
   them in turn; here one network is trained on the composed pairs (input sampled and interpolated, target sharp)
   and so learns both steps, anti-aliasing included, in one training and one pass.
3. **Network** (`train_network`): an `mrisr.networks.models.EDSR2D` on the grid (global skip: it starts as the cubic
   interpolation), trained through the project's fastai pipeline (`mrisr.training.train.sr_learner`: patches on tissue,
   drawn towards where input and target differ, flips, L1 loss, one-cycle schedule, best epoch on held-out slices).
4. **Through-plane** (`through_plane`): the scan is cubic-interpolated onto the ``t`` grid along its slice axis and
   every (slice, row) image (one per column) and every (slice, column) image (one per row) goes through the
   network: two estimates of the volume, each sharp along the slice axis.
5. **Fusion** (`fourier_burst_accumulation`): per 3D spatial frequency, the estimates are averaged with weights
   ``|F_k|^p / sum_j |F_j|^p`` (Delbracio and Sapiro, IEEE TIP 2015, as SMORE fuses its orientations): where one
   orientation restored a frequency and the other did not, the restored one dominates.

The output has the scan's in-plane grid and slices ``t`` apart, its affine from `mrisr.physics.degrade.Upsample` (slice
centres of the scan stay voxel centres). `forward_model` is the thick-slice acquisition of the output grid, for data
consistency (`mrisr.physics.consistency.enforce`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from mrisr.data.cases import split_slabs
from mrisr.data.pipeline import prepare_subject
from mrisr.errors import InputError
from mrisr.physics.consistency import enforce
from mrisr.physics.degrade import Degradation, SliceProfile, Upsample, resize_axis
from mrisr.physics.steps import PROFILES
from mrisr.training.config import ExperimentConfig
from mrisr.training.device import default_device
from mrisr.training.recipes import recipe
from mrisr.training.train import fit, sr_learner
from mrisr.volume import Volume, intensity_scale

MIN_SLICES = 8  # fewer slices leave too little to train on and to hold out
ISOTROPIC_TOLERANCE = 1.1  # a slice spacing within 10 % of the in-plane spacing is isotropic: nothing to do
ORIENTATIONS = {"slice x row": 2, "slice x column": 1}  # image name -> the volume axis that numbers the images
FBA_POWER = 8.0


@dataclass(frozen=True)
class SliceGeometry:
    """How a scan's slices sample its slice axis (volume axis 0), and the output grid.

    Attributes:
        slice_spacing: ``s``, mm between slice centres.
        slice_thickness: ``d``, mm: the width of the slice profile (for ``"gaussian"``, its FWHM). Below ``s`` the
            slices have a gap, above it they overlap.
        in_plane_spacing: mm per voxel along (row, column).
        grid_spacing: ``g = s / k`` (``k`` an integer), mm between the slices the network makes.
        target_spacing: mm between the output slices; the network's grid is resampled onto it where it differs
            from ``g`` (``g`` is the finest ``s / k`` not coarser than it).
        profile: ``"rect"`` or ``"gaussian"`` (`mrisr.physics.degrade.SliceProfile`).
    """

    slice_spacing: float
    slice_thickness: float
    in_plane_spacing: tuple[float, float]
    grid_spacing: float
    target_spacing: float
    profile: str = "rect"

    @property
    def factor(self) -> int:
        """``k = s / g``: network slices per scan slice."""
        return int(round(self.slice_spacing / self.grid_spacing))

    @property
    def profile_width(self) -> float:
        """The slice thickness in samples of the network's grid, ``d / g``."""
        return self.slice_thickness / self.grid_spacing

    def slice_profile(self) -> SliceProfile:
        """The acquisition along the slice axis on the network's grid: the profile, sampled every ``k``."""
        return SliceProfile(self.profile_width, self.factor, self.profile)


def slice_geometry(volume: Volume, target_spacing: float | None = None, slice_thickness: float | None = None,
                   profile: str = "rect") -> SliceGeometry:
    """The `SliceGeometry` of ``volume``; one-line `InputError` s (naming the scan) for what cannot be done.

    ``target_spacing`` (mm): the output slice spacing; default the finest in-plane spacing, rounded so that it
    divides the slice spacing (one grid, no resampling). ``slice_thickness`` (mm): default
    ``meta["slice_thickness_mm"]`` (DICOM's SliceThickness), else the spacing. ``profile``: the slice profile's
    shape, ``"rect"`` or ``"gaussian"`` (`mrisr.physics.degrade.SliceProfile`).
    """
    source = volume.meta.get("source_path") or "the scan"
    if volume.data.ndim != 3:
        raise InputError(source, f"a time series {volume.data.shape}: super-resolve one frame at a time")
    if min(volume.shape) == 1:
        raise InputError(source, f"a 2D image {volume.shape}: self-supervised super-resolution needs a stack of "
                                 "slices")
    s, *in_plane = volume.spacing
    finest = min(in_plane)
    spacing = " x ".join(f"{v:.4g}" for v in volume.spacing)
    if max(in_plane) > s:
        raise InputError(source, f"the coarsest axis is in-plane ({spacing} mm), not the slice axis 0: "
                                 "reorient the scan so that axis 0 is the slice axis")
    if s <= ISOTROPIC_TOLERANCE * finest and target_spacing is None:
        raise InputError(source, f"nothing to do: the scan is already isotropic ({spacing} mm)")
    if volume.shape[0] < MIN_SLICES:
        raise InputError(source, f"the slice axis has {volume.shape[0]} slices; self-supervised super-resolution "
                                 f"needs at least {MIN_SLICES}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if target_spacing is None:
        target_spacing = s / max(1, round(s / finest))
    if isinstance(target_spacing, bool) or not isinstance(target_spacing, (int, float, np.number)):
        raise TypeError(f"target_spacing is one number, the spacing in mm between output slices along the slice axis "
                        f"(axis 0; the in-plane spacing is kept), got {target_spacing!r}")
    target_spacing = float(target_spacing)
    k = s / target_spacing if target_spacing > 0 else 0
    if k < 1.5:
        raise InputError(source, f"nothing to do: a target spacing of {target_spacing:g} mm is not finer than the "
                                 f"slice spacing {s:.4g} mm")
    k = round(k) if abs(k - round(k)) <= 0.01 * k else int(np.ceil(k))  # a grid at least as fine as the target
    thickness = slice_thickness if slice_thickness is not None else volume.meta.get("slice_thickness_mm", s)
    if not float(thickness) > 0:
        raise InputError(source, f"the slice thickness must be > 0 mm, got {thickness}")
    grid = s / k
    return SliceGeometry(s, float(thickness), (in_plane[0], in_plane[1]), grid,
                         grid if abs(target_spacing - grid) <= 0.01 * grid else target_spacing, profile)


def training_degradation(geometry: SliceGeometry) -> Degradation:
    """What the slices do to the image along the slice axis, as a 2D `Degradation` acting on image axis 0 on the
    network's grid: the slice profile sampled every ``k`` samples, then cubic interpolation back."""
    return Degradation([geometry.slice_profile(), Upsample(geometry.factor, method="bicubic", axes=(0,))], ndim=2,
                       name="selfsr_slices")


def forward_model(geometry: SliceGeometry) -> Degradation:
    """The thick-slice acquisition of a volume on the network's grid (3D, slice axis 0): what made the scan from it,
    for `mrisr.physics.consistency.enforce`."""
    return Degradation([geometry.slice_profile()], ndim=3, name="selfsr_acquisition")


def to_target_grid(volume: Volume, geometry: SliceGeometry) -> Volume:
    """``volume`` on the network's grid (slices ``g`` apart) resampled along axis 0 onto slices ``target_spacing``
    apart by cubic interpolation (`scipy.ndimage.map_coordinates`, the first slice kept in place), with the matching
    affine; unchanged where the two grids are one."""
    ratio = geometry.target_spacing / geometry.grid_spacing
    if ratio == 1:
        return volume
    n = int(np.floor((volume.shape[0] - 1) / ratio + 1e-9)) + 1
    coords = np.meshgrid(np.arange(n) * ratio, *[np.arange(m) for m in volume.shape[1:]], indexing="ij")
    data = ndimage.map_coordinates(volume.data, coords, order=3, mode="nearest").astype(np.float32)
    return Volume(data, volume.resampled_affine({0: (ratio, 0)}), volume.meta)


def upsample_slices(volume: Volume, geometry: SliceGeometry) -> Volume:
    """``volume`` cubic-interpolated onto the output grid along its slice axis (`Upsample`): the network's input
    and the cubic baseline, with the output grid's affine."""
    up = Degradation([Upsample(geometry.factor, method="bicubic", axes=(0,))], ndim=3, name="selfsr_grid")(volume)
    meta = {k: v for k, v in up.meta.items() if k != "degradation"}
    return Volume(up.data, up.affine, meta)


def training_volumes(volume: Volume, geometry: SliceGeometry) -> dict[str, Volume]:
    """The scan's in-plane images with one in-plane axis resampled onto the output grid, as 2D targets: ``"rows"``
    (rows degraded: images ``(row on the t grid, column)``) and ``"columns"`` (images ``(column on the t grid,
    row)``). Each is a `Volume` ``(S, n_t, n)`` with spacing ``(s, t, in-plane)``, ``n_t`` cut to a multiple of
    ``k``."""
    data = torch.from_numpy(volume.data)
    t, k = geometry.grid_spacing, geometry.factor
    out = {}
    for name, axis in (("rows", 1), ("columns", 2)):
        images = data if axis == 1 else data.transpose(1, 2)
        spacing = volume.spacing[axis]
        n_t = int(round(images.shape[1] * spacing / t))
        resized = resize_axis(images, 1, n_t, "bicubic", antialias=True)[:, : n_t // k * k]
        other = volume.spacing[3 - axis]
        out[name] = Volume.from_spacing(resized.contiguous().numpy(), (geometry.slice_spacing, t, other),
                                        {"source_path": f"{volume.meta.get('source_path', 'scan')}:{name}"})
    return out


def _recipe(size: str | ExperimentConfig) -> ExperimentConfig:
    return size if isinstance(size, ExperimentConfig) else recipe("selfsr", size)


def train_network(volume: Volume, geometry: SliceGeometry, size: str | ExperimentConfig = "fast", device=None,
                  progress: bool = True, seed: int = 0, run_dir: str | Path | None = None,
                  images: dict[str, Volume] | None = None) -> torch.nn.Module:
    """Train the through-plane `EDSR2D` on ``volume``'s own in-plane images (module docstring, steps 2-3).

    The last fifth of the images of each orientation (behind a gap of one) validates; the best epoch's weights are
    returned, in eval mode, on ``device``. ``size``: a size of ``RECIPES["selfsr"]``
    (`mrisr.training.recipes`), or a recipe of your own (its ``patch_size`` in the thick scan's slices and columns).
    ``images``: other 2D targets laid out as `training_volumes` lays them out (default: that of ``volume``), e.g. true
    through-plane images, for a supervised comparison.
    """
    network = _recipe(size)
    degradation = training_degradation(geometry)
    subjects, valid = [], []
    images = training_volumes(volume, geometry) if images is None else images
    for name, stack in images.items():
        train, held_out = split_slabs(stack, holdout=0.2, margin_mm=stack.spacing[0], axis=0)
        subjects += [prepare_subject(train, degradation, name, seed),
                     prepare_subject(held_out, degradation, f"{name}:holdout", seed)]
        valid.append(f"{name}:holdout")
    height = min(s.hr.shape[1] for s in subjects) // geometry.factor * geometry.factor
    slices, width = network.patch_size  # on the slice grid: each slice is geometry.factor rows of the output
    patch = [min(slices * geometry.factor, height), min(width, min(s.hr.shape[2] for s in subjects))]
    with tempfile.TemporaryDirectory(prefix="mrisr-selfsr-") as scratch:
        config = network.updated(dict(name="selfsr", degradation=degradation.to_dict(), patch_size=patch, seed=seed,
                                      fold=geometry.factor, run_dir=str(run_dir or scratch)))
        learn = sr_learner(config, subjects=subjects, device=device, progress=None if progress else False,
                           valid_names=valid)
        if not progress:
            learn.logger = lambda values: None
        fit(learn, config)
        model = learn.model.eval()
    return model


@torch.no_grad()
def through_plane(model: torch.nn.Module, volume: torch.Tensor, image_axis: int, batch_size: int = 8) -> torch.Tensor:
    """Run the 2D ``model`` on every through-plane image of ``volume`` ``(S, R, C)`` (normalised, on the model's
    device): ``image_axis=2`` takes the (slice, row) images, one per column; ``1`` the (slice, column) images, one per
    row. Returns the ``(S, R, C)`` estimate."""
    device = next(model.parameters()).device
    images = volume.movedim(image_axis, 0)  # (n images, S, other in-plane axis)
    out = torch.empty_like(images)
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                    enabled=False)
    with autocast:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size, None].to(device)
            out[start:start + batch_size] = model(batch)[:, 0].float().to(out.device)
    return out.movedim(0, image_axis)


def through_plane_estimates(model: torch.nn.Module, volume: Volume, geometry: SliceGeometry,
                            progress: bool = True) -> tuple[Volume, torch.Tensor]:
    """``(grid, estimates)``: the scan cubic-interpolated onto the output grid (`upsample_slices`: the network's
    input) and the network's estimates from its two orientations of through-plane images (`ORIENTATIONS`),
    ``(2, S * k, R, C)`` in the scan's intensity units, on the model's device."""
    grid = upsample_slices(volume, geometry)
    scale = intensity_scale(grid.data)
    x = torch.from_numpy(grid.data / scale).to(next(model.parameters()).device)
    estimates = []
    for name, axis in ORIENTATIONS.items():
        if progress:
            print(f"selfsr: through-plane {name} images ({x.shape[axis]} of {x.shape[0]} x {x.shape[3 - axis]})",
                  flush=True)
        estimates.append(through_plane(model, x, axis) * scale)
    return grid, torch.stack(estimates)


def fourier_burst_accumulation(estimates: torch.Tensor, power: float = FBA_POWER) -> torch.Tensor:
    """Fuse ``estimates`` ``(K, *spatial)`` of one image into one ``(*spatial)``: per spatial frequency ``w``,
    ``sum_k a_k(w) F_k(w)`` with ``a_k = |F_k|^power / sum_j |F_j|^power`` (Delbracio and Sapiro, "Burst
    deblurring", IEEE TIP 2015). ``power=0`` is the plain mean; a large power keeps, per frequency, the estimate with
    the most energy there: detail one estimate restored and the others lost."""
    dims = tuple(range(1, estimates.ndim))
    spectra = torch.fft.rfftn(estimates, dim=dims)
    weights = torch.softmax(power * torch.log(spectra.abs().clamp_min(1e-12)), dim=0)  # stable |F|^p normalisation
    return torch.fft.irfftn((weights * spectra).sum(0), s=estimates.shape[1:], dim=tuple(d - 1 for d in dims))


def super_resolve(volume: Volume, target_spacing: float | None = None, size: str | ExperimentConfig = "fast",
                  device=None,
                  progress: bool = True, *, slice_thickness: float | None = None, profile: str = "rect",
                  consistency: bool = False, seed: int = 0, run_dir: str | Path | None = None) -> Volume:
    """Super-resolve ``volume`` along its slice axis (axis 0) from the scan alone (SMORE; module docstring).

    Args:
        volume: a 3D scan with thick slices along axis 0 (``(S, R, C)``, slice spacing coarser than in-plane).
        target_spacing: output slice spacing in mm (default: about the in-plane spacing, dividing the slice
            spacing: isotropic). One that does not divide the slice spacing is reached by resampling the network's
            grid (the finest ``s / k`` not coarser than it) with cubic interpolation (`to_target_grid`).
        size: the network and schedule, a size of ``RECIPES["selfsr"]`` (`mrisr.training.recipes`): ``"fast"`` (a
            CPU, about 2 minutes for a 96 x 192 x 192 crop), ``"thorough"`` (a CPU, up to 15), ``"full"`` (a GPU),
            ``"smoke"``; or a recipe of your own (`train_network`).
        device: where to train and run (default: CUDA when available).
        progress: print what happens (training epochs: fastai's bars in a terminal or notebook).
        slice_thickness: mm, when the scan's header does not say (default: its ``meta["slice_thickness_mm"]``, else
            the slice spacing). Thinner than the spacing is a gap, thicker an overlap.
        profile: the slice profile, ``"rect"`` or ``"gaussian"`` (FWHM ``slice_thickness``).
        consistency: make the output consistent with the scan under `forward_model` (back-projection on the
            network's grid, `mrisr.physics.consistency.enforce`, before any resampling): its slices give the scan back.
        seed: training seed; the same seed gives the same output on the same device.
        run_dir: keep the training run (``best.pth``, ``config.json``) there; default a temporary folder.

    Returns:
        A `Volume` with slices ``target_spacing`` apart (``(S * k, R, C)`` where it divides the slice spacing) and
        the matching affine; ``meta["selfsr"]`` records the geometry, recipe and timings,
        ``meta["slice_thickness_mm"]`` is the output spacing.
    """
    geometry = slice_geometry(volume, target_spacing, slice_thickness, profile)
    network, size_name = _recipe(size), size if isinstance(size, str) else "custom"
    device = default_device(device)
    say = print if progress else (lambda *args, **kwargs: None)
    resampled = "" if geometry.target_spacing == geometry.grid_spacing else \
        f", resampled from {geometry.grid_spacing:.4g} mm"
    say(f"selfsr: {volume.shape} at {' x '.join(f'{v:.4g}' for v in volume.spacing)} mm, slices "
        f"{geometry.slice_thickness:.4g} mm thick ({geometry.profile}); output slices {geometry.target_spacing:.4g} "
        f"mm apart (x{geometry.factor}{resampled}), {size_name} size on "
        f"{device}", flush=True)
    start = time.perf_counter()
    model = train_network(volume, geometry, network, device, progress, seed, run_dir)
    trained = time.perf_counter()
    grid, estimates = through_plane_estimates(model, volume, geometry, progress)
    fused = fourier_burst_accumulation(estimates).cpu().numpy()
    info = {"slice_spacing_mm": geometry.slice_spacing, "slice_thickness_mm": geometry.slice_thickness,
            "profile": geometry.profile, "grid_spacing_mm": geometry.grid_spacing,
            "target_spacing_mm": geometry.target_spacing, "factor": geometry.factor,
            "size": size_name, "recipe": network.to_dict(), "seed": seed,
            "orientations": list(ORIENTATIONS), "fusion": f"fourier burst accumulation, p = {FBA_POWER:g}",
            "train_s": round(trained - start, 1), "apply_s": round(time.perf_counter() - trained, 1)}
    out = Volume(fused, grid.affine, {**volume.meta, "selfsr": info, "slice_thickness_mm": geometry.target_spacing})
    if consistency:
        out = enforce(out, volume, forward_model(geometry), method="back_projection", device=device)
    out = to_target_grid(out, geometry)
    say(f"selfsr: done in {time.perf_counter() - start:.0f} s (training {info['train_s']:.0f} s)", flush=True)
    return out
