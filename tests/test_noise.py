"""The noise-level estimator on real scans, and the noisy presets' own noise realisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mrisr import Volume, load_volume
from mrisr.errors import InputError
from mrisr.imaging.foreground import foreground_mask
from mrisr.imaging.noise import air_model, noise_sigma, signal_level, snr
from mrisr.physics.degrade import Degradation, knee_fast_acquisition, preset
from mrisr.physics.steps import Quantise, RicianNoise


def _rician(data: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = sigma * rng.standard_normal((2, *data.shape))
    return np.sqrt((data + noise[0]) ** 2 + noise[1] ** 2).astype(np.float32)


@pytest.fixture(scope="module")
def brain(sample_data):
    """The real 0.7 mm brain, every 2nd voxel: 192 x 192 x 137, the whole head and the air around it."""
    volume = load_volume(sample_data / "brain_t1_iso" / "studyforrest_t1w_0.7mm.nii.gz")
    return Volume(volume.data[::2, ::2, ::2], volume.affine @ np.diag([2, 2, 2, 1]), volume.meta)


@pytest.fixture(scope="module")
def dess_quarter(dess):
    """The real DESS knee, every 4th column: 80 x 512 x 128, the whole field of view (knee and air)."""
    return Volume(dess.data[:, :, ::4], dess.affine @ np.diag([1, 1, 4, 1]), dess.meta)


def test_the_dess_air_is_multi_channel_noise(dess_quarter):
    """The DESS is an 8-channel knee coil combined by root-sum-of-squares: its air fits a chi distribution of a few
    effective channels (correlated coils count for fewer), and the per-channel level is what its tissue carries."""
    model = air_model(dess_quarter)
    assert 2 <= model["coils"] <= 8 and model["shape_error"] < 0.1
    assert noise_sigma(dess_quarter) == pytest.approx(model["sigma"])
    assert 10 < snr(dess_quarter) < 60


@pytest.mark.parametrize("factor", [8.0, 12.0])
def test_the_estimator_recovers_a_known_snr_on_the_dess_with_added_noise(dess_quarter, factor):
    """Added single-channel noise much stronger than the scan's own makes its air Rayleigh again (less the slight
    Rician bias of the scan's own air magnitude under it, a few percent at these factors)."""
    native = noise_sigma(dess_quarter)
    added = factor * native
    noisy = dess_quarter.with_data(_rician(dess_quarter.data.astype(np.float64), added, seed=1))
    expected = np.hypot(native, added)  # the scan's own noise adds in quadrature to what was added
    assert air_model(noisy)["coils"] == 1
    assert noise_sigma(noisy) == pytest.approx(expected, rel=0.10)
    assert snr(noisy) == pytest.approx(snr(dess_quarter) * native / expected, rel=0.10)


@pytest.mark.parametrize("sigma", [2.0, 5.0])
def test_the_brain_s_blanked_air_is_refused_and_added_noise_is_recovered(brain, sigma):
    """The brain's air is blanked (defaced and masked: almost all exact zeros), so its own noise cannot be read; noise
    added to it is the only noise its air then holds, and the estimator recovers it."""
    with pytest.raises(InputError, match=r"\d+ % of the air beside the subject is 0 \(blanked\)"):
        noise_sigma(brain)
    noisy = brain.with_data(_rician(brain.data.astype(np.float64), sigma, seed=2))
    assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.10)
    signal = float(signal_level(torch.from_numpy(noisy.data).reshape(-1), 1))  # the SNR's signal: this scan's tissue
    assert snr(noisy) == pytest.approx(signal / sigma, rel=0.10)


def test_a_scan_without_air_is_an_error_naming_it():
    tissue = Volume.from_spacing(np.full((8, 64, 64), 100.0, np.float32) + np.random.default_rng(0).random(
        (8, 64, 64), np.float32), meta={"source_path": "scans/cropped.nii.gz"})
    with pytest.raises(InputError, match=r"^scans/cropped.nii.gz: only \d+ voxels of air"):
        noise_sigma(tissue)


def test_the_noisy_preset_adds_the_scans_own_level_independent_of_the_reference(dess_quarter):
    hr = dess_quarter
    lr = preset("knee_fast_acquisition")(hr, seed=3)
    clean = preset("knee_fast_acquisition_noise_free")(hr)
    input_noise = (lr.data - clean.data).astype(np.float64)
    reference_noise = hr.data - ndimage.gaussian_filter(hr.data.astype(np.float64), 1.0)  # the scan's own grain
    mask = foreground_mask(hr)
    correlation = np.corrcoef(input_noise[mask], reference_noise[mask])[0, 1]
    assert abs(correlation) < 0.05
    # the noise is there, at the scan's level: in the measured quarter of k-space, a quarter of its variance
    sigma = noise_sigma(hr)
    assert lr.meta["noise"]["sigma"] == pytest.approx(sigma)
    assert np.std(input_noise[mask]) == pytest.approx(sigma * np.sqrt(0.25), rel=0.15)
    # and it is a new draw each seed, the same for the same seed
    again = preset("knee_fast_acquisition")(hr, seed=3)
    np.testing.assert_array_equal(again.data, lr.data)
    assert not np.array_equal(preset("knee_fast_acquisition")(hr, seed=4).data, lr.data)


def test_a_known_reference_noise_is_not_copied_into_the_input():
    """Synthetic: the reference = clean + its own noise; the input's noise (input minus the noise-free degradation
    of the reference) is uncorrelated with the reference's noise."""
    rng = np.random.default_rng(0)
    clean = np.zeros((16, 96, 96))
    clean[:, 24:72, 24:72] = 100.0
    own = 5.0 * rng.standard_normal(clean.shape)
    reference = np.abs(clean + own).astype(np.float32)
    noisy = Degradation([RicianNoise(snr=20.0)])
    lr = noisy(reference, seed=1)
    fg = clean > 0
    assert abs(np.corrcoef((lr - reference)[fg], own[fg])[0, 1]) < 0.05


def test_quantise_rounds_to_integers_and_is_left_out_of_the_forward_model():
    x = torch.linspace(0, 10, 101).reshape(1, 1, 101)
    spec = Degradation([Quantise(1.0)], ndim=2)
    out = spec(x)
    assert torch.equal(out, torch.round(x))
    assert preset("knee_fast_acquisition").forward_model().steps == preset(
        "knee_fast_acquisition_noise_free").steps
    quantised = knee_fast_acquisition(quantise=True)
    assert isinstance(quantised.steps[-1], Quantise) and not quantised.forward_model().needs_scan_noise()


def test_noise_at_the_scans_level_is_refused_on_patches():
    from mrisr.data.pipeline import DegradeBatch

    with pytest.raises(ValueError, match="cannot be measured on patches"):
        DegradeBatch(preset("knee_fast_acquisition"))
    DegradeBatch(preset("knee_fast_acquisition_noise_free"))
