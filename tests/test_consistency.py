"""Data consistency on the real DESS knee: exact k-space projection, back-projection that converges, no change to the
reference itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mrisr import Volume
from mrisr.imaging.foreground import foreground_mask
from mrisr.imaging.kspace import fftc
from mrisr.physics.consistency import back_projection, consistency_error, enforce, noise_norm
from mrisr.physics.degrade import (Degradation, Downsample, GaussianBlur, KSpaceTruncation, RicianNoise, SliceThickness,
                                   Upsample, preset)


def _band(image: np.ndarray, axes=(0, 2), fraction=0.5) -> np.ndarray:
    """The centred k-space samples a `KSpaceTruncation` of ``fraction`` keeps along ``axes``."""
    k = fftc(image, axes)
    index = [slice(None)] * image.ndim
    for axis in axes:
        n = image.shape[axis]
        m = round(fraction * n)
        index[axis] = slice(n // 2 - m // 2, n // 2 - m // 2 + m)
    return k[tuple(index)]


def _box(shape, axes=(0, 2), fraction=0.5) -> np.ndarray:
    """Centred k-space samples within the kept band or its mirror image (|frequency| <= m / 2) along every axis."""
    box = np.ones(shape, bool)
    for axis in axes:
        n = shape[axis]
        frequency = np.abs(np.arange(n) - n // 2).reshape([-1 if a == axis else 1 for a in range(len(shape))])
        box = box & (frequency <= round(fraction * n) // 2)
    return box


def _relative(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture(scope="module")
def noisy_guess(dess_block):
    """An imperfect super-resolution of the knee block: the truth plus noise of 2 % of its bright tissue (every
    frequency a little wrong)."""
    rng = np.random.default_rng(0)
    scale = float(np.percentile(dess_block.data, 99.5))
    return dess_block.with_data(dess_block.data + 0.02 * scale * rng.standard_normal(dess_block.shape, np.float32))


def test_kspace_projection_puts_back_the_measured_band_exactly(dess_block, noisy_guess):
    measured = KSpaceTruncation(0.5, axes=(0, 2), output="complex")  # the complex image the scanner measured
    lr = Degradation([measured])(torch.from_numpy(dess_block.data))
    out = enforce(torch.from_numpy(noisy_guess.data), lr, Degradation([measured]), spacing=dess_block.spacing)
    assert not out.is_complex()
    assert _relative(_band(out.numpy()), _band(dess_block.data)) < 1e-5
    assert _relative(_band(noisy_guess.data), _band(dess_block.data)) > 1e-2  # it was not so before
    # Outside the band and its mirror image (frequencies up to m / 2 in size), the network's spectrum is untouched.
    kept = fftc(out.numpy(), (0, 2)), fftc(noisy_guess.data, (0, 2))
    assert _relative(kept[0][~_box(dess_block.shape)], kept[1][~_box(dess_block.shape)]) < 1e-5


@pytest.mark.parametrize("same_grid", [True, False])
def test_kspace_projection_of_magnitude_scans(dess_block, noisy_guess, same_grid):
    spec = Degradation([KSpaceTruncation(0.5, axes="phase_encoding", same_grid=same_grid)], name="truncation")
    lr = spec(dess_block)  # a magnitude image, as scanners store them
    assert consistency_error(dess_block, lr, spec) == 0.0
    unchanged = enforce(dess_block, lr, spec)
    assert _relative(unchanged.data, dess_block.data) < 1e-5  # the reference itself passes through
    before = consistency_error(noisy_guess, lr, spec)
    out = enforce(noisy_guess, lr, spec)
    assert consistency_error(out, lr, spec) < 2e-3 * before
    if same_grid:  # the phase refinement never raises the error, even from a far worse guess
        worse = noisy_guess.with_data(dess_block.data + 5 * (noisy_guess.data - dess_block.data))
        errors = [consistency_error(worse, lr, spec)]
        errors += [consistency_error(enforce(worse, lr, spec, iterations=k), lr, spec) for k in (1, 2, 4)]
        assert all(b <= a for a, b in zip(errors, errors[1:])) and errors[-1] < 0.5 * errors[0], errors
    assert out.meta["data_consistency"]["method"] == "kspace"
    np.testing.assert_array_equal(out.affine, noisy_guess.affine)
    # Only what the measurement lacks was changed: the guess is closer to the truth than it was.
    assert np.linalg.norm(out.data - dess_block.data) < np.linalg.norm(noisy_guess.data - dess_block.data)


def test_soft_projection_lies_between_the_guess_and_the_exact_projection(dess_block, noisy_guess):
    spec = preset("knee_fast_acquisition_noise_free")
    lr = spec(dess_block)
    errors = [consistency_error(enforce(noisy_guess, lr, spec, weight=w, iterations=1), lr, spec)
              for w in (0.1, 1.0, 10.0)]
    exact = consistency_error(enforce(noisy_guess, lr, spec, iterations=1), lr, spec)
    assert consistency_error(noisy_guess, lr, spec) > errors[0] > errors[1] > errors[2] > exact


@pytest.mark.parametrize("steps", [
    [GaussianBlur(1.2), Downsample(2, axes=(1, 2))],
    [SliceThickness(3), Upsample(3, method="bicubic", axes=(0,))],
    [GaussianBlur(0.8, axes=(1,)), KSpaceTruncation(0.5, axes=(0, 2)), RicianNoise(30)],
], ids=["blur+downsample", "thick-slices", "blur+truncation+noise"])
def test_back_projection_lowers_the_consistency_error_at_every_step(dess_block, noisy_guess, steps):
    spec = Degradation(steps, name="chain")
    lr = spec(dess_block, seed=1)
    forward = spec.forward_model()
    assert not any(isinstance(s, RicianNoise) for s in forward.steps)
    x, errors = back_projection(torch.from_numpy(noisy_guess.data), torch.from_numpy(lr.data), forward,
                                dess_block.spacing, (0, 2), iterations=8)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    floor = consistency_error(dess_block, lr, spec)  # the noise in lr: what the truth itself leaves
    assert errors[-1] - floor < 0.7 * (errors[0] - floor), (floor, errors)
    assert errors[-1] == pytest.approx(consistency_error(x, lr, spec, spacing=dess_block.spacing,
                                                         phase_encoding_axes=(0, 2)), rel=1e-4)
    if not any(isinstance(s, RicianNoise) for s in steps):  # the noiseless reference is a fixed point
        again, _ = back_projection(torch.from_numpy(dess_block.data), torch.from_numpy(lr.data), forward,
                                   dess_block.spacing, (0, 2), iterations=3)
        assert _relative(again.numpy(), dess_block.data) < 1e-5


def test_enforce_refuses_mismatched_inputs(dess_block):
    spec = preset("knee_fast_acquisition_noise_free")
    lr = spec(dess_block)
    wrong = Volume(dess_block.data[:, :100], dess_block.affine, dess_block.meta)
    with pytest.raises(ValueError, match="degrades to"):
        enforce(wrong, lr, spec)
    with pytest.raises(ValueError, match="one KSpaceTruncation"):
        blur = preset("knee_fast_acquisition_blur_noise_free")
        enforce(dess_block, blur(dess_block), blur, method="kspace")


def test_noise_aware_projection_does_not_copy_the_measured_noise_into_a_good_estimate(dess_block):
    """The inverse crime, undone: with noise in the measured band, the exact projection of the true image copies
    that noise in; the Wiener mix, told the noise level, keeps the estimate where it is better than the data."""
    spec = preset("knee_fast_acquisition")
    lr = spec(dess_block, seed=0)
    assert lr.meta["noise"]["sigma"] > 0
    fg = foreground_mask(dess_block)

    def error(x):
        return float(np.sqrt(np.mean((x.data - dess_block.data)[fg] ** 2)))

    exact = enforce(dess_block, lr, spec, noise_sigma=None)
    aware = enforce(dess_block, lr, spec)  # the level lr records
    assert aware.meta["data_consistency"]["noise_sigma"] == lr.meta["noise"]["sigma"]
    assert error(aware) < 0.5 * error(exact)
    # and a poor estimate (the degraded input itself, blurred further) still takes the measured band
    poor = dess_block.with_data(ndimage.gaussian_filter(lr.data, 2.0))
    assert error(enforce(poor, lr, spec)) < error(poor)


def test_back_projection_with_noise_stops_at_the_noise_level(dess_block):
    spec = preset("knee_thick_slices")
    hr = dess_block.with_data(dess_block.data[:24])
    lr = spec(hr, seed=0)
    forward = spec.forward_model()
    start = torch.from_numpy(ndimage.gaussian_filter(lr.data, 1.0))
    y = torch.from_numpy(lr.data)
    sigma = lr.meta["noise"]["sigma"]
    _, blind = back_projection(start, y, forward, iterations=50)
    _, stopped = back_projection(start, y, forward, iterations=50, noise_sigma=sigma)
    floor = noise_norm(forward, start, None, None, sigma) / float(torch.linalg.vector_norm(y))
    assert len(stopped) < len(blind) and stopped[-1] <= floor < stopped[-2]  # stopped at the first step below it
    assert blind[-1] < floor  # noise-blind, it goes on fitting the noise
