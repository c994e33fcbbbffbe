"""Data consistency: make a super-resolved image agree with the low-resolution scan it was made from.

A network's output ``sr`` is a guess. The low-resolution scan ``lr`` is a measurement: ``lr = A(hr) + noise``, where
``A`` is the deterministic part of the `mrisr.physics.degrade.Degradation` (`Degradation.forward_model`). Whatever the
network adds, ``A(sr)`` should give back ``lr``; the network may only fill in what ``A`` throws away. Two operators
enforce this:

* `kspace_projection`, for `KSpaceTruncation` (the knee presets): the acquisition measured the central band of
  k-space, so the output's spectrum in that band is replaced by the measured one and only the frequencies outside
  the band are the network's (the data-consistency layer of Schlemper et al., IEEE TMI 2018, for Cartesian
  sampling). Exact (``weight=None``), or soft for noisy data: in the band ``(S + weight * w * M) / (1 + weight *
  w^2)``, the least-squares compromise between the network's spectrum ``S`` and the measured ``M = w K`` (``w``:
  the acquisition window).
* `back_projection`, for any chain of steps (blur, downsampling, slice thickness, truncation): iterative
  back-projection (Irani and Peleg, CVGIP 1991), here gradient descent on ``1/2 ||A(x) - lr||^2`` with the exact
  adjoint of ``A`` (its vector-Jacobian product, from autograd) and the step ``1 / L``, ``L = ||A||^2`` estimated by
  power iteration, so that the consistency error falls at every iteration.

Magnitude images. Scanners store magnitude images, so the measured complex image ``z`` (band-limited) is only known
as ``lr = |z|``. Where ``z`` rings below zero (Gibbs lobes at edges, air), ``lr`` is rectified. The projection
takes the phase of ``z`` from the network's own band-limited image and refines it (Fienup's error reduction) before
taking the spectrum of ``lr`` with that phase, so that the degraded reference itself passes through unchanged
(`enforce(hr, A(hr))` returns ``hr``). The band kept is made
symmetric (``k`` and ``-k`` together), so a real image stays real and its measured band is matched exactly.

Noisy measurements. ``lr = A(hr + n)``: the measured band holds noise, and copying it exactly copies the noise.
Given the noise level (``noise_sigma``: the standard deviation of ``n`` per voxel of the high-resolution grid, what
`mrisr.physics.steps.RicianNoise` added; a degraded `Volume` records it in ``meta["noise"]``), `enforce` instead

* weighs each measured frequency against the estimate (k-space projection): in shells of frequency, the estimate's
  error variance ``e^2`` in the band (the mean of ``|S - M / w|^2`` less the noise variance) against the noise
  variance ``sigma^2``, the minimum-mean-square-error mix ``(e^2 M / w + sigma^2 S) / (e^2 + sigma^2)`` (a Wiener
  combination: a band measured below the noise keeps the estimate);
* stops back-projection when the residual ``||A(x) - lr||`` reaches the norm of the noise, ``||A(n)||`` (Morozov's
  discrepancy principle: Landweber iteration regularised by early stopping), so it never fits the noise.

`consistency_error` is ``||A(sr) - lr|| / ||lr||``: 0 for an output that explains the measurement exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mrisr.physics.degrade import Context, Degradation, KSpaceTruncation
from mrisr.volume import Volume

METHODS = ("auto", "kspace", "back_projection")


def _arrays(sr, lr, degradation: Degradation, spacing, phase_encoding_axes, device):
    """``(sr, lr)`` as float tensors on ``device``, and the ``(spacing, phase_encoding_axes)`` of the degradation's
    spatial axes (a `Volume` brings its own)."""
    if isinstance(sr, Volume):
        spacing, phase_encoding_axes = degradation.volume_axes(sr)
    tensors = []
    for x in (sr, lr):
        x = x.data if isinstance(x, Volume) else x
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x, np.complex64 if np.iscomplexobj(x) else np.float32))
        tensors.append(x.to(device or x.device, torch.complex64 if x.is_complex() else torch.float32))
    return tensors, spacing, phase_encoding_axes


def _checked_forward(degradation: Degradation, sr: torch.Tensor, lr: torch.Tensor, spacing, pe) -> Degradation:
    forward = degradation.forward_model()
    shape = forward.apply_tensor(sr[(0,) * (sr.ndim - forward.ndim)][None], spacing, pe)[0].shape[1:]
    if tuple(shape) != tuple(lr.shape[-forward.ndim:]) or sr.shape[:-forward.ndim] != lr.shape[:-forward.ndim]:
        raise ValueError(f"{degradation.name}: the super-resolved image {tuple(sr.shape)} degrades to "
                         f"{tuple(sr.shape[:-forward.ndim]) + tuple(shape)}, but the low-resolution scan is "
                         f"{tuple(lr.shape)}; give the scan the degradation made and the output predicted from it")
    return forward


def consistency_error(sr, lr, degradation: Degradation, *, spacing=None, phase_encoding_axes=None,
                      device=None) -> float:
    """``||A(sr) - lr|| / ||lr||`` (unitless), ``A`` the degradation without its noise steps.

    ``sr``: the high-resolution estimate, ``lr``: the low-resolution scan (each a `Volume`, array or tensor; arrays
    need ``spacing`` in mm and ``phase_encoding_axes`` where the degradation uses them).
    """
    (x, y), spacing, pe = _arrays(sr, lr, degradation, spacing, phase_encoding_axes, device)
    forward = _checked_forward(degradation, x, y, spacing, pe)
    y = y.abs() if y.is_complex() else y  # a complex measurement is compared as the magnitude image it gives
    with torch.no_grad():
        residual = forward.apply_tensor(x, spacing, pe)[0] - y
        return float(torch.linalg.vector_norm(residual) / torch.linalg.vector_norm(y))


# -- k-space projection ----------------------------------------------------------------------------------------------

def _mirror(x: torch.Tensor, dims) -> torch.Tensor:
    """``x(-k)`` for a spectrum in FFT order (unshifted) along ``dims``."""
    return torch.roll(torch.flip(x, dims), [1] * len(dims), dims)


def _band(step: KSpaceTruncation, shape, axes, dims, ndim, ctx, device):
    """Per axis of ``axes``: ``(window, n, m)``: the acquisition window over the ``n`` frequencies, in FFT order and
    shaped to broadcast along ``dim`` (0 outside the ``m`` kept samples)."""
    profiles = []
    for axis, dim in zip(axes, dims):
        n = shape[dim]
        m = step.kept(axis, n, ndim, ctx)
        window = np.fft.ifftshift(step.band_window(n, m))  # centred -> FFT order
        view = [1] * len(shape)
        view[dim] = n
        profiles.append((torch.as_tensor(window, dtype=torch.float32, device=device).view(view), n, m))
    return profiles


def kspace_projection(sr: torch.Tensor, lr: torch.Tensor, step: KSpaceTruncation, ndim: int, ctx: Context,
                      weight: float | None = None, phase_iterations: int = 10,
                      noise_sigma: float | None = None, shells: int = 8) -> torch.Tensor:
    """Replace the band of ``sr``'s spectrum that ``step`` measured by the band of ``lr`` (see the module docstring).

    ``sr``: real ``(..., *spatial)`` on the high-resolution grid; ``lr``: what ``step`` made of the true image, on
    the same grid or on the reduced grid (``step.same_grid`` false). A complex ``lr`` is the measurement itself. A
    magnitude ``lr`` lacks the phase of the measured image: it is taken from the band-limited image of the current
    estimate and refined ``phase_iterations`` times (the error-reduction algorithm of Fienup, Appl. Opt. 1982, whose
    magnitude error never increases); the first pass already returns ``sr`` unchanged when ``sr`` is the true image.
    ``weight``: ``None`` for the exact projection, else the soft weight of the measurement. ``noise_sigma``: the
    noise level of the measurement (module docstring), which replaces ``weight`` by the Wiener mix, estimated in
    ``shells`` shells of frequency (the largest of ``|k| / k_max`` over the measured axes). Returns a real tensor.
    """
    axes = step.resolve_axes(ndim, ctx)
    dims = [sr.ndim - ndim + a for a in axes]
    profiles = _band(step, sr.shape, axes, dims, ndim, ctx, sr.device)
    window = 1.0
    for profile, _, _ in profiles:
        window = window * profile  # the separable acquisition window, 0 outside the band
    in_band = window > 0
    mirror_only = _mirror(in_band, dims) & ~in_band  # -k measured, k not: a real image has conj(value at -k) there
    shell = _shells(sr.shape, dims, profiles, shells) if noise_sigma is not None else None
    scale = float(np.prod([np.sqrt(n / m) for _, n, m in profiles])) if not step.same_grid else 1.0
    complex_step = dataclasses.replace(step, output="complex")
    x = sr
    for _ in range(1 if lr.is_complex() else max(1, phase_iterations)):
        spectrum = torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho")
        if lr.is_complex():
            measured_image = lr
        else:  # the magnitude lr with the phase of the estimate's own band-limited image
            estimate = complex_step.apply(x, ctx, ndim)
            magnitude = estimate.abs()
            measured_image = lr * torch.where(magnitude > 0, estimate / magnitude.clamp_min(1e-30), 1.0)
        measured = torch.fft.fftn(torch.fft.ifftshift(measured_image, dim=dims), dim=dims, norm="ortho")
        if not step.same_grid:  # the reduced grid's spectrum (w K sqrt(m / n)), placed at its full-grid frequencies
            measured = torch.fft.fftshift(measured, dim=dims)
            pad = []
            for dim in reversed(range(sr.ndim)):
                n, m = sr.shape[dim], measured.shape[dim]
                pad += [n // 2 - m // 2, n - m - (n // 2 - m // 2)] if dim in dims else [0, 0]
            measured = torch.fft.ifftshift(torch.nn.functional.pad(measured, pad) * scale, dim=dims)
        if noise_sigma is not None:  # measured = w (K + N): the Wiener mix of M / w and the estimate, shell by shell
            trusted = in_band & (window > 1e-3)
            data = torch.where(trusted, measured / torch.where(trusted, window, 1.0), spectrum)
            kept = _wiener_mix(spectrum, data, trusted, shell, shells, float(noise_sigma))
        elif weight is None:  # measured = w K: K where the window is not ~0
            trusted = window > 1e-3
            kept = torch.where(trusted, measured / torch.where(trusted, window, 1.0), spectrum)
        else:
            kept = (spectrum + weight * window * measured) / (1 + weight * window**2)
        projected = torch.where(in_band, kept, spectrum)
        projected = torch.where(mirror_only, _mirror(kept, dims).conj(), projected)
        x = torch.fft.fftshift(torch.fft.ifftn(projected, dim=dims, norm="ortho"), dim=dims).real
    return x


def _shells(shape, dims, profiles, shells: int) -> torch.Tensor:
    """Shell index (0 .. shells - 1) of every frequency of the measured band, in FFT order: the largest over the
    measured axes of ``|k|`` as a fraction of the band's half width."""
    radius = 0.0
    for dim, (profile, n, m) in zip(dims, profiles):
        k = torch.as_tensor(np.abs(np.fft.fftfreq(n) * n) / max(m / 2, 1), dtype=torch.float32, device=profile.device)
        radius = torch.maximum(torch.as_tensor(radius), k.view(profile.shape))
    return torch.clamp((radius * shells).long(), 0, shells - 1).expand(shape)


def _wiener_mix(estimate, data, trusted, shell, shells: int, sigma: float) -> torch.Tensor:
    """``(e^2 data + sigma^2 estimate) / (e^2 + sigma^2)`` where ``trusted``, the estimate elsewhere: ``e^2`` the
    estimate's error variance in each shell, the mean of ``|estimate - data|^2`` there less ``sigma^2``."""
    out = estimate.clone()
    for k in range(shells):
        where = trusted & (shell == k)
        if not bool(where.any()):
            continue
        error = float((estimate[where] - data[where]).abs().pow(2).mean()) - sigma**2
        share = max(error, 0.0) / (max(error, 0.0) + sigma**2) if sigma > 0 else 1.0
        out[where] = share * data[where] + (1 - share) * estimate[where]
    return out


# -- back-projection -------------------------------------------------------------------------------------------------

def operator_norm_squared(forward: Degradation, x: torch.Tensor, spacing, pe, iterations: int = 12,
                          seed: int = 0) -> float:
    """``L = ||A||^2``: the largest eigenvalue of ``A^T A`` by power iteration (``A^T A v`` is the gradient of
    ``1/2 ||A v||^2``; for a magnitude k-space truncation, that of its linear, complex part)."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    v = torch.randn(x.shape, generator=generator, device=x.device)
    value = 1.0
    for _ in range(iterations):
        v = (v / torch.linalg.vector_norm(v)).requires_grad_(True)
        (v,) = torch.autograd.grad(0.5 * (forward.apply_tensor(v, spacing, pe)[0].abs() ** 2).sum(), v)
        value = float(torch.linalg.vector_norm(v))
    return value


def noise_norm(forward: Degradation, x: torch.Tensor, spacing, pe, noise_sigma: float, seed: int = 0) -> float:
    """``||A(n)||``: the norm the measurement noise has after the acquisition model, for white noise ``n`` of
    ``noise_sigma`` per voxel on the grid of ``x`` (one draw; for a linear ``A`` of many voxels, within a fraction
    of a percent of its expectation)."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    noise = noise_sigma * torch.randn(x.shape, generator=generator, device=x.device)
    with torch.no_grad():
        return float(torch.linalg.vector_norm(forward.apply_tensor(noise, spacing, pe)[0]))


def back_projection(sr: torch.Tensor, lr: torch.Tensor, forward: Degradation, spacing=None, pe=None,
                    iterations: int = 20, step_size: float | None = None,
                    noise_sigma: float | None = None) -> tuple[torch.Tensor, list[float]]:
    """Iterative back-projection: ``x <- x + step_size * A^T (lr - A(x))``, at most ``iterations`` times from
    ``x = sr``.

    ``A`` is ``forward`` (a `Degradation` without noise), its adjoint the exact vector-Jacobian product;
    ``step_size`` defaults to ``1 / ||A||^2`` (`operator_norm_squared`), which lowers ``||A(x) - lr||`` at every
    iteration for a linear ``A``. With ``noise_sigma`` (the measurement's noise per voxel of ``sr``'s grid) it stops
    once ``||A(x) - lr||`` is no larger than the noise's own norm (`noise_norm`; the discrepancy principle).
    Returns ``x`` and the consistency error ``||A(x) - lr|| / ||lr||`` before each iteration and after the last.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    step_size = 1.0 / operator_norm_squared(forward, sr, spacing, pe) if step_size is None else float(step_size)
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    norm = torch.linalg.vector_norm(lr)
    floor = 0.0 if noise_sigma is None else noise_norm(forward, sr, spacing, pe, noise_sigma) / float(norm)
    x, errors = sr.detach().clone(), []
    for _ in range(iterations + 1):
        x.requires_grad_(True)
        residual = forward.apply_tensor(x, spacing, pe)[0] - lr
        errors.append(float(torch.linalg.vector_norm(residual.detach()) / norm))
        if len(errors) > iterations or errors[-1] <= floor:
            break
        (gradient,) = torch.autograd.grad(0.5 * (residual.abs() ** 2).sum(), x)
        x = (x - step_size * gradient).detach()
    return x.detach(), errors


# -- the public entry point ------------------------------------------------------------------------------------------

def enforce(sr, lr, degradation: Degradation, *, method: str = "auto", noise_sigma: float | str | None = "recorded",
            weight: float | None = None, iterations: int = 20, step_size: float | None = None, spacing=None,
            phase_encoding_axes=None, device=None):
    """``sr`` made consistent with the measured ``lr`` under ``degradation`` (returns the type of ``sr``).

    Args:
        sr: the super-resolved image on the high-resolution grid: a `Volume`, array or tensor ``(..., *spatial)``.
        lr: the low-resolution scan ``degradation`` made (same intensity units): `Volume`, array or tensor.
        degradation: the acquisition model; its noise steps are ignored.
        method: ``"kspace"`` (`kspace_projection`; the degradation must be one `KSpaceTruncation`),
            ``"back_projection"`` (`back_projection`; any chain), or ``"auto"``: k-space projection where it
            applies, else back-projection.
        noise_sigma: the measurement's noise level, in ``lr``'s units per voxel of ``sr``'s grid before the
            acquisition model (module docstring): a soft projection, or back-projection stopped at the noise.
            ``"recorded"`` (default): what a degraded `Volume` ``lr`` records in ``meta["noise"]`` (none recorded:
            no noise); ``None``: a noise-free measurement, matched exactly.
        weight: k-space projection of a noise-free measurement only: ``None`` exact, else the soft weight of the
            measured band.
        iterations: back-projection steps (at most, with noise), or (k-space projection of a magnitude ``lr``)
            phase refinements.
        step_size: back-projection only; default ``1 / ||A||^2``.
        spacing, phase_encoding_axes: for arrays and tensors, as `Degradation.__call__` takes them.
        device: where to compute (default: where ``sr`` lies; the CPU for arrays and Volumes).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if noise_sigma == "recorded":
        noise_sigma = lr.meta.get("noise", {}).get("sigma") if isinstance(lr, Volume) else None
    (x, y), spacing, pe = _arrays(sr, lr, degradation, spacing, phase_encoding_axes, device)
    forward = _checked_forward(degradation, x, y, spacing, pe)
    exact = len(forward.steps) == 1 and isinstance(forward.steps[0], KSpaceTruncation)
    if method == "kspace" and not exact:
        raise ValueError(f"{degradation.name}: k-space projection needs a degradation of one KSpaceTruncation "
                         "step; use method='back_projection'")
    if method == "kspace" or (method == "auto" and exact):
        ctx = Context(spacing, pe, None)
        out = kspace_projection(x, y, forward.steps[0], forward.ndim, ctx, weight, iterations, noise_sigma)
        info = {"method": "kspace", "weight": weight, "iterations": iterations, "noise_sigma": noise_sigma}
    else:
        out, errors = back_projection(x, y, forward, spacing, pe, iterations, step_size, noise_sigma)
        info = {"method": "back_projection", "iterations": len(errors) - 1, "noise_sigma": noise_sigma,
                "error_before": errors[0], "error_after": errors[-1]}
    if isinstance(sr, Volume):
        return sr.with_data(out.cpu().numpy(), data_consistency={"degradation": degradation.name, **info})
    if isinstance(sr, np.ndarray):
        return out.cpu().numpy()
    return out
