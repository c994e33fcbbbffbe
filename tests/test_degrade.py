"""Degradation steps: exact physical properties on synthetic data, and the same checks on the real knee."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from mrisr import Volume
from mrisr.errors import InputError
from mrisr.imaging.kspace import fftc
from mrisr.physics.degrade import (PRESETS, Degradation, Downsample, GaussianBlur, KSpaceTruncation, RicianNoise,
                                   SliceProfile, SliceThickness, Upsample, knee_fast_acquisition_blur, preset)


def _band_check(image: np.ndarray, out: np.ndarray, axes, fraction: float):
    """Energy outside the kept band is ~0 and the band is unchanged (complex spectra along ``axes``)."""
    k_in, k_out = fftc(image, axes), fftc(out, axes)
    inside = np.zeros(image.shape, bool)
    band = [slice(None)] * image.ndim
    for a in axes:
        n = image.shape[a]
        m = round(fraction * n)
        band[a] = slice(n // 2 - m // 2, n // 2 - m // 2 + m)
    inside[tuple(band)] = True
    energy = np.sum(np.abs(k_in) ** 2)
    assert np.sum(np.abs(k_out[~inside]) ** 2) < 1e-10 * energy
    np.testing.assert_allclose(k_out[inside], k_in[inside], atol=1e-5 * np.abs(k_in).max())
    assert np.sum(np.abs(k_in[~inside]) ** 2) > 1e-4 * energy  # the test image did have energy out there


@pytest.mark.parametrize("shape, axes", [((16, 30, 24), (0, 1)), ((9, 17, 20), (2,))])
def test_kspace_truncation_keeps_band_exactly_and_nothing_outside(shape, axes):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    step = KSpaceTruncation(fraction=0.5, axes=axes, output="complex")
    _band_check(image.astype(np.float64), _complex(step, image), axes, 0.5)


def _complex(step, image, **kwargs):
    """The complex image of a k-space step (a Volume or ``Degradation.__call__`` on arrays keeps magnitudes only)."""
    ndim = 2 if image.ndim == 2 else 3
    return Degradation([step], ndim).apply_tensor(torch.from_numpy(image), **kwargs)[0].numpy().astype(np.complex128)


def test_kspace_truncation_on_real_knee_along_its_phase_encoding_axes(dess_block):
    axes = dess_block.meta["phase_encoding_axes"]
    assert axes == (0, 2)
    out = _complex(KSpaceTruncation(0.5, axes="phase_encoding", output="complex"), dess_block.data,
                   phase_encoding_axes=axes)
    _band_check(dess_block.data.astype(np.float64), out, axes, 0.5)
    lr = preset("knee_fast_acquisition_noise_free")(dess_block)
    assert lr.shape == dess_block.shape and np.allclose(lr.affine, dess_block.affine)
    np.testing.assert_allclose(lr.data, np.abs(out), rtol=1e-4, atol=1e-3)
    assert json.loads(lr.meta["degradation"])["name"] == "knee_fast_acquisition_noise_free"


def test_kspace_window_tapers_the_band():
    image = np.random.default_rng(1).random((40, 36)).astype(np.float32)
    out = _complex(KSpaceTruncation(0.5, axes=(0,), window="hann", output="complex"), image)
    k_in, k_out = fftc(image.astype(np.float64), (0,)), fftc(out, (0,))
    from scipy.signal import windows
    np.testing.assert_allclose(k_out[10:30], k_in[10:30] * windows.hann(20)[:, None], atol=1e-5)


def test_kspace_reduced_grid_keeps_intensity_and_centre():
    image = np.zeros((1, 64, 64), np.float32)
    image[0, 20:44, 24:40] = 7.0
    vol = Volume.from_spacing(image, (2.0, 0.5, 0.5))
    lr = Degradation([KSpaceTruncation(0.25, axes=(1, 2), same_grid=False)])(vol)
    assert lr.shape == (1, 16, 16) and lr.spacing == (2.0, 2.0, 2.0)
    complex_lr = _complex(KSpaceTruncation(0.25, axes=(1, 2), same_grid=False, output="complex"), image)
    assert abs(complex_lr.mean() - image.mean()) < 1e-5 * image.mean()  # k = 0 kept: same mean intensity
    np.testing.assert_allclose(lr.data, np.abs(complex_lr), atol=1e-6)
    centre_hr = vol.affine @ [0, 32, 32, 1]
    centre_lr = lr.affine @ [0, 8, 8, 1]
    np.testing.assert_allclose(centre_lr, centre_hr)


def test_blur_point_response_has_requested_fwhm_and_matches_scipy():
    delta = np.zeros((1, 1, 201), np.float32)
    delta[0, 0, 100] = 1.0
    sigma_mm, spacing = 1.5, (1.0, 1.0, 0.25)
    out = Degradation([GaussianBlur(sigma_mm, units="mm")])(delta, spacing=spacing)[0, 0]
    half = out.max() / 2
    above = np.flatnonzero(out >= half)
    lo, hi = above[0], above[-1]
    left = lo - 1 + (half - out[lo - 1]) / (out[lo] - out[lo - 1])   # linear interpolation of the crossings
    right = hi + (out[hi] - half) / (out[hi] - out[hi + 1])
    fwhm_mm = (right - left) * spacing[2]
    assert abs(fwhm_mm - 2.3548 * sigma_mm) < 0.01 * 2.3548 * sigma_mm
    image = np.random.default_rng(2).random((12, 20, 24)).astype(np.float32)
    out = Degradation([GaussianBlur((0.0, 1.2, 0.7), units="voxel")])(image)
    np.testing.assert_allclose(out, ndimage.gaussian_filter(image, (0, 1.2, 0.7)), atol=1e-6)


def test_blur_variant_has_the_sinc_fwhm_of_half_kspace():
    """Both knee presets widen a point along a phase-encoding axis to the same FWHM (1.2067 / fraction voxels)."""
    delta = np.zeros((1, 256), np.float32)
    delta[0, 128] = 1.0
    blur = Degradation(knee_fast_acquisition_blur(noise=False).steps, ndim=2)(delta, phase_encoding_axes=(1,))[0]
    sinc = _complex(KSpaceTruncation(0.5, output="complex"), delta, phase_encoding_axes=(1,)).real[0]
    widths = []
    for profile in (blur, sinc):  # band-limited (Fourier) interpolation to 1/16 voxel, then count samples above half
        fine = np.fft.irfft(np.fft.rfft(profile), 16 * profile.size)
        widths.append(np.count_nonzero(fine >= fine.max() / 2) / 16)
    assert abs(widths[0] - widths[1]) < 0.03 * widths[1]
    assert abs(widths[1] - 2 * 1.2067) < 0.05


def test_downsampler_does_not_alias_stripes_that_decimation_aliases():
    x = np.arange(96)
    for freq, area_gain in ((0.5, 0.0), (0.4, np.cos(0.4 * np.pi))):  # cycles per voxel; box response |cos(pi f)|
        stripes = np.tile(np.cos(2 * np.pi * freq * x), (8, 1)).astype(np.float32)
        decimated = stripes[:, ::2]
        assert np.abs(decimated).max() > 0.99  # plain decimation folds the stripes to a full-contrast pattern
        area = Degradation([Downsample(2, "area", axes=(1,))], ndim=2)(stripes)
        bicubic = Degradation([Downsample(2, "bicubic", axes=(1,))], ndim=2)(stripes)
        assert abs(np.abs(area).max() - area_gain) < 1e-5
        assert np.abs(bicubic[:, 4:-4]).max() < 0.05


def test_bicubic_matches_pil_and_area_is_the_block_mean():
    image = np.random.default_rng(3).random((64, 96)).astype(np.float32)
    ours = Degradation([Downsample(4, "bicubic")], ndim=2)(image)
    pil = np.asarray(Image.fromarray(image, mode="F").resize((24, 16), Image.BICUBIC, reducing_gap=None))
    np.testing.assert_allclose(ours, pil, atol=1e-5)
    volume = np.random.default_rng(4).random((6, 8, 10)).astype(np.float32)
    area = Degradation([Downsample((3, 2, 5), "area")])(volume)
    np.testing.assert_allclose(area, volume.reshape(2, 3, 4, 2, 2, 5).mean((1, 3, 5)), rtol=1e-6)


def test_down_then_up_returns_to_the_fine_grid():
    vol = Volume(np.random.default_rng(5).random((8, 12, 16)),
                 np.array([[0, 0, -0.4, 10], [0, 0.4, 0, -3], [1.2, 0, 0, 7], [0, 0, 0, 1]]))
    down = Degradation([Downsample((2, 4), "area", axes=(1, 2))])(vol)
    assert down.shape == (8, 6, 4)
    np.testing.assert_allclose(down.spacing, (1.2, 0.8, 1.6))
    up = Degradation([Upsample((2, 4), "nearest", axes=(1, 2))])(down)
    np.testing.assert_allclose(up.affine, vol.affine, atol=1e-12)
    np.testing.assert_array_equal(up.data, np.repeat(np.repeat(down.data, 2, 1), 4, 2))
    linear = Degradation([Upsample(2, "linear")])(np.ones((4, 5, 6), np.float32))
    np.testing.assert_allclose(linear, 1.0)


def test_slice_thickness_averages_slabs_along_the_slice_axis():
    vol = Volume.from_spacing(np.random.default_rng(6).random((10, 4, 4)), (0.5, 1, 1))
    thick = Degradation([SliceThickness(thickness=3, stride=2)])(vol)
    assert thick.shape == (4, 4, 4) and thick.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(thick.data[1], vol.data[2:5].mean(0), rtol=1e-6)
    np.testing.assert_allclose(thick.affine[:3, 3], [0.5, 0, 0])  # centred on input slice 1


def test_centred_slices_with_a_gap_or_an_overlap_keep_the_grid_of_contiguous_ones():
    image = np.random.default_rng(7).random((12, 5), np.float32)  # 2D: axis 0 is the slice axis of the image
    contiguous, maps = Degradation([SliceThickness(3)], ndim=2).apply_tensor(torch.from_numpy(image))
    for thickness in (1, 5):  # a 2-sample gap, a 2-sample overlap
        thick, thick_maps = Degradation([SliceThickness(thickness, stride=3, centred=True)], ndim=2).apply_tensor(
            torch.from_numpy(image))
        assert thick.shape == contiguous.shape and thick_maps == maps  # same centres: 3 i + 1
    np.testing.assert_allclose(thick[1].numpy(), image[2:7].mean(0), rtol=1e-6)  # slice 1: samples 2..6
    np.testing.assert_allclose(thick[0].numpy(), image[[0, 0, 1, 2, 3]].mean(0), rtol=1e-6)  # mirrored at the start


@pytest.mark.parametrize("width, stride", [(3, 3), (5, 3), (1, 3), (6, 4)])
def test_a_rect_profile_of_whole_slices_is_the_centred_slice_thickness(width, stride):
    image = torch.from_numpy(np.random.default_rng(8).random((24, 5)))
    profile, profile_maps = Degradation([SliceProfile(width, stride)], ndim=2).apply_tensor(image)
    thick, thick_maps = Degradation([SliceThickness(width, stride, centred=True)], ndim=2).apply_tensor(image)
    np.testing.assert_allclose(profile.numpy(), thick.numpy(), rtol=1e-12)
    assert profile_maps == thick_maps


def test_a_fractional_rect_profile_weighs_its_ends_by_their_overlap():
    """3.3 mm slices 4.29 mm apart on a 0.429 mm grid: 7.69 samples of a 10-sample block, a gap of 2.3 samples."""
    step = SliceProfile(7.69, 10)
    w = step.weights().numpy()
    assert len(w) == 10 and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w / w.max(), [0, 0.845, 1, 1, 1, 1, 1, 1, 0.845, 0], atol=1e-9)
    ramp = torch.arange(40.0, dtype=torch.float64)[:, None]
    out = step.apply(ramp[None, None], None, 2)[0, 0, :, 0]
    np.testing.assert_allclose(out.numpy(), [4.5, 14.5, 24.5, 34.5])  # a symmetric profile keeps a ramp's centres


def test_a_gaussian_profile_has_the_stated_full_width_at_half_maximum():
    step = SliceProfile(7.0, 1, "gaussian")  # centred on one sample: the weights sample the profile itself
    w = step.weights().numpy()
    u = np.arange(len(w)) - (len(w) - 1) / 2
    fine = np.linspace(u[0], u[-1], 20001)
    above = fine[np.interp(fine, u, w / w.max()) >= 0.5]
    assert above[-1] - above[0] == pytest.approx(7.0, abs=0.05)
    assert w.sum() == pytest.approx(1.0) and w[0] / w.max() < 0.02  # out to three sigma
    constant = torch.full((1, 1, 30, 4), 2.5, dtype=torch.float64)
    np.testing.assert_allclose(SliceProfile(7.0, 3, "gaussian").apply(constant, None, 2).numpy(), 2.5)


def test_slice_profile_refuses_what_it_cannot_be():
    with pytest.raises(ValueError, match="shape must be one of"):
        SliceProfile(3, 2, "sinc")
    with pytest.raises(ValueError, match="width must be > 0"):
        SliceProfile(0, 2)
    assert Degradation.from_json(Degradation([SliceProfile(3.3, 4, "gaussian")]).to_json()).steps[0] == \
        SliceProfile(3.3, 4, "gaussian")


def test_the_slice_thickness_in_meta_follows_the_degradation():
    vol = Volume.from_spacing(np.ones((12, 4, 4), np.float32), (1.5, 1, 1), {"slice_thickness_mm": 2.0})
    assert Degradation([SliceThickness(3)])(vol).meta["slice_thickness_mm"] == pytest.approx(5.0)  # 2 + 2 x 1.5
    thickness = preset("knee_thick_slices_noise_free")(vol).meta["slice_thickness_mm"]
    assert thickness == pytest.approx(5.0)  # interpolation adds none
    assert Degradation([Downsample(2, "area", axes=(0,))])(vol).meta["slice_thickness_mm"] == pytest.approx(3.5)
    assert "slice_thickness_mm" not in Degradation([GaussianBlur(1.0, axes=(0,))])(vol).meta  # no longer known
    assert Degradation([GaussianBlur(1.0, axes=(1, 2))])(vol).meta["slice_thickness_mm"] == 2.0  # in-plane only


@pytest.mark.parametrize("snr", [5.0, 20.0])
def test_rician_noise_hits_the_snr_measured_in_the_foreground(snr):
    """Two-region SNR: the foreground mean over the noise sigma estimated from air (Rayleigh mean = sigma
    sqrt(pi/2))."""
    image = np.zeros((4, 128, 128), np.float32)
    image[:, 32:96, 32:96] = 100.0
    image[:, 40:60, 40:60] = 300.0
    noisy = Degradation([RicianNoise(snr)])(image, seed=0)
    fg = image > 50
    sigma = noisy[:, :16, :].mean() / np.sqrt(np.pi / 2)
    assert abs(image[fg].mean() / sigma / snr - 1) < 0.05


def test_rician_noise_on_real_knee(dess_block):
    noisy = Degradation([RicianNoise(30.0)])(dess_block, seed=1)
    from mrisr.imaging.foreground import tissue_threshold
    bright = dess_block.data > float(tissue_threshold(torch.from_numpy(dess_block.data), 3))
    target_sigma = dess_block.data[bright].mean() / 30.0
    strong = dess_block.data > 10 * target_sigma  # Rician is Gaussian where signal >> sigma
    sigma = np.std(noisy.data[strong] - dess_block.data[strong])
    assert abs(sigma / target_sigma - 1) < 0.05


def test_same_seed_same_output_and_batches_on_tensors():
    spec = Degradation([KSpaceTruncation(0.5, axes=(1, 2)), RicianNoise(10.0)])
    x = torch.rand(3, 1, 8, 16, 16)
    a, b, c = spec(x, seed=7), spec(x, seed=7), spec(x, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    deterministic = Degradation(spec.steps[:1])
    np.testing.assert_allclose(deterministic(x)[1, 0], deterministic(x[1, 0].numpy()), atol=1e-6)
    half = deterministic(x.half())
    assert half.dtype == torch.float16


def test_spec_json_round_trip():
    custom = Degradation([KSpaceTruncation((0.5, 0.75), axes=(0, 2), window="tukey", tukey_alpha=0.3),
                          GaussianBlur((0.5, 1.0, 0.0), units="mm"), Downsample((1, 2, 2), "area"),
                          Upsample(2, "bicubic", axes=(1, 2)), SliceThickness(2), RicianNoise(25.0)],
                         ndim=3, name="mine")
    for spec in [custom, *(preset(name) for name in PRESETS)]:
        again = Degradation.from_json(spec.to_json())
        assert again == spec and again.to_json() == spec.to_json()
    image = np.random.default_rng(8).random((8, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(custom(image, spacing=(1, 1, 1), seed=3),
                                  Degradation.from_json(custom.to_json())(image, spacing=(1, 1, 1), seed=3))


def test_cardiac_preset_on_real_cine(cardiac):
    lr = preset("cardiac_x4_noise_free")(cardiac)
    assert lr.data.shape == (30, 1, 46, 64)
    np.testing.assert_allclose(lr.spacing, (cardiac.spacing[0], 4 * cardiac.spacing[1], 4 * cardiac.spacing[2]))
    assert abs(lr.data.mean() / cardiac.data.mean() - 1) < 0.01  # resampling keeps the mean intensity


@pytest.mark.parametrize("make, message", [
    (lambda: Degradation([Downsample(4)], ndim=2)(np.zeros((30, 32), np.float32)), "multiple of the factor 4"),
    (lambda: KSpaceTruncation(fraction=0.0), r"fraction must be in \(0, 1\]"),
    (lambda: KSpaceTruncation(fraction=1.5), r"fraction must be in \(0, 1\]"),
    (lambda: GaussianBlur(sigma=-1.0), "sigma must be >= 0"),
    (lambda: Downsample(factor=1.5), "positive integers"),
    (lambda: RicianNoise(snr=0), "snr must be > 0"),
    (lambda: SliceThickness(4, stride=3, centred=True), "thickness - stride even"),
    (lambda: preset("knee_fast_acquisition_noise_free")(np.zeros((32, 32), np.float32)), "got a 2D array"),
    (lambda: Degradation([GaussianBlur(1.0, units="mm")])(np.zeros((4, 4, 4), np.float32)), "pass spacing"),
    (lambda: preset("knee_fast_acquisition_noise_free")(np.zeros((4, 4, 4), np.float32)), "phase_encoding_axes"),
    (lambda: Degradation([Downsample(2, axes=(3,))]), "outside the 3 spatial axes"),
    (lambda: preset("knee"), "unknown degradation preset 'knee'"),
])
def test_bad_input_gets_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_volume_errors_name_the_file():
    vol = Volume.from_spacing(np.zeros((4, 6, 6)), meta={"source_path": "scans/knee.nii.gz"})
    with pytest.raises(InputError, match=r"^scans/knee.nii.gz: knee_fast_acquisition_noise_free degradation: .*phase"):
        preset("knee_fast_acquisition_noise_free")(vol)


def test_thick_slice_preset_keeps_the_grid_and_averages_slices(dess_block):
    from mrisr.data.cases import crop_to_multiple
    from mrisr.physics.degrade import load_degradation

    spec = preset("knee_thick_slices_noise_free")
    assert spec.size_multiple() == (3, 1, 1)
    knee = crop_to_multiple(Volume(dess_block.data[:20], dess_block.affine, dess_block.meta), spec.size_multiple())
    assert knee.shape[0] == 18
    lr = spec(knee)
    assert lr.shape == knee.shape and np.allclose(lr.affine, knee.affine)  # same grid: the input is the baseline
    thick = knee.data.reshape(6, 3, *knee.shape[1:]).mean(1)  # what the scanner measured
    # The interpolated slice at each thick slice's centre is that thick slice (cubic, cell-centred).
    np.testing.assert_allclose(lr.data[1::3][1:-1], thick[1:-1], rtol=1e-4, atol=1e-3 * float(knee.data.max()))
    # The slice axis is degraded, the in-plane axes are not: only axes 1 and 2 play the same role.
    roles = spec.axis_roles(knee.spacing)
    assert roles[1] == roles[2] != roles[0]
    assert load_degradation(spec.to_dict()).to_dict() == spec.to_dict()
    assert load_degradation("knee_thick_slices_noise_free").to_dict() == spec.to_dict()
    with pytest.raises(InputError, match="neither a degradation preset"):
        load_degradation("no_such_preset")
