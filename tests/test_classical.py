"""The classical baselines each beat cubic interpolation on a case built for them, and their settings are fitted
on validation cases only; on the real knee, every baseline of a noisy preset is computed from the same input."""

from __future__ import annotations

import numpy as np
import pytest

from mrisr import Volume
from mrisr.evaluation.baselines import (SAME_GRID, TV_LABEL, WIENER_LABEL, classical, fit_baselines, resample,
                                        tv_reconstruction, wiener_deconvolution)
from mrisr.imaging import metrics
from mrisr.physics.degrade import Degradation, Downsample, GaussianBlur, RicianNoise, preset


def _psnr(x: Volume, ref: Volume) -> float:
    return float(metrics.psnr(x.data, ref.data, float(ref.data.max() - ref.data.min())))


def _blocks(shape=(4, 96, 96), seed=0) -> np.ndarray:
    """A piecewise-constant phantom: rectangles of random intensities on a dark background (TV's ideal image)."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, 10.0, np.float32)
    for _ in range(12 * shape[1] // 96):
        r, c = rng.integers(4, shape[1] - 28, 2)
        h, w = rng.integers(8, 24, 2)
        image[:, r:r + h, c:c + w] = rng.uniform(50, 200)
    return image


def test_tv_pocs_beats_cubic_on_a_piecewise_constant_phantom():
    hr = Volume.from_spacing(_blocks(), (2.0, 1.0, 1.0))
    spec = Degradation([RicianNoise(snr=15.0), Downsample(2, "area"), ], ndim=2, name="x2 noisy")
    lr = spec(hr, seed=0)
    cubic = resample(lr, hr, 3)
    tv = tv_reconstruction(lr, hr, spec, weight=0.05, iterations=10)
    assert _psnr(tv, hr) > _psnr(cubic, hr) + 1.0


def test_wiener_beats_the_blurred_noisy_input():
    """On the same grid the cubic baseline is the input itself; the deconvolution recovers what the blur took."""
    hr = Volume.from_spacing(_blocks((2, 128, 128), seed=1))
    spec = Degradation([RicianNoise(snr=10.0), GaussianBlur(1.5)], ndim=2, name="blur noisy")
    lr = spec(hr, seed=0)
    out = wiener_deconvolution(lr, hr, spec, balance=1e-3)
    assert out.shape == hr.shape and out.meta["baseline"] == {"method": WIENER_LABEL, "balance": 1e-3}
    assert _psnr(out, hr) > _psnr(lr, hr) + 1.5


def test_wiener_needs_a_final_blur():
    hr = Volume.from_spacing(_blocks())
    with pytest.raises(ValueError, match="no Gaussian blur ends the degradation"):
        wiener_deconvolution(hr, hr, Degradation([Downsample(2)], ndim=2))


def test_settings_are_fitted_on_the_validation_cases_and_applied_to_a_test_input():
    spacing = (2.0, 1.0, 1.0)
    valid = {f"v{k}": Volume.from_spacing(_blocks((2, 64, 64), seed=k), spacing) for k in (1, 2)}
    spec = Degradation([RicianNoise(snr=15.0), Downsample(2, "area"), GaussianBlur(0.7)], ndim=2, name="x2")
    lines = []
    settings = fit_baselines(valid, spec, seed=0, log=lines.append)
    assert settings["fitted_on"] == ["v1", "v2"] and settings["wiener"] is not None
    assert settings["best"] == max(settings["validation_psnr_db"], key=settings["validation_psnr_db"].get)
    assert settings["tv"]["weight"] > 0 and any("TV-POCS" in line for line in lines)
    test = Volume.from_spacing(_blocks((2, 64, 64), seed=4), spacing)
    lr = spec(test, seed=1)
    methods = classical(lr, test, spec, settings)
    assert set(methods) == {"nearest", "linear", "cubic", "cubic+DC", TV_LABEL, WIENER_LABEL}
    assert all(m.shape == test.shape for m in methods.values())
    assert max(_psnr(m, test) for m in methods.values()) > _psnr(methods["cubic"], test)


def test_every_baseline_of_the_noisy_knee_preset_on_a_real_slab(dess_block):
    degradation = preset("knee_fast_acquisition")
    settings = {"dc": {"noise_sigma": "recorded"}, "tv": {"weight": 0.01, "iterations": 3}, "wiener": None}
    lr = degradation(dess_block, seed=0)
    methods = classical(lr, dess_block, degradation, settings)
    assert set(methods) == {SAME_GRID, SAME_GRID + "+DC", TV_LABEL}
    assert methods[SAME_GRID] is lr
    for volume in methods.values():
        assert volume.shape == dess_block.shape and np.isfinite(volume.data).all()
    assert _psnr(methods[TV_LABEL], dess_block) > _psnr(lr, dess_block)  # TV removes some of the new noise
