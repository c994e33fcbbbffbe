"""Metrics against scikit-image and scipy references, on random data and on the real knee and heart."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from mrisr.data.phantom import Tissue, knee_labels, knee_phantom
from mrisr.imaging.foreground import foreground_mask, otsu_threshold
from mrisr.imaging.metrics import fastai_metrics, hfen, nrmse, psnr, ssim
from mrisr.physics.degrade import preset


def _sk_ssim(pred, target, data_range):
    return structural_similarity(target.astype(np.float64), pred.astype(np.float64), data_range=data_range,
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _check_against_skimage(pred, target, data_range):
    pred64, target64 = pred.astype(np.float64), target.astype(np.float64)
    assert abs(psnr(pred, target, data_range) - peak_signal_noise_ratio(target64, pred64, data_range=data_range)) < 1e-4
    assert abs(ssim(pred, target, data_range) - _sk_ssim(pred, target, data_range)) < 1e-4
    assert abs(nrmse(pred, target) - normalized_root_mse(target64, pred64)) < 1e-5
    on_gpu_path = ssim(torch.from_numpy(pred)[None], torch.from_numpy(target)[None], data_range, ndim=pred.ndim)
    assert abs(float(on_gpu_path[0]) - _sk_ssim(pred, target, data_range)) < 1e-4


@pytest.mark.parametrize("shape", [(40, 52), (20, 24, 30)])
def test_random_images_agree_with_skimage(shape):
    rng = np.random.default_rng(0)
    target = rng.random(shape).astype(np.float32)
    pred = (target + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    _check_against_skimage(pred, target, 1.0)


def test_real_knee_slice_and_volume_agree_with_skimage(dess_block):
    lr = preset("knee_fast_acquisition_noise_free")(dess_block).data
    hr = dess_block.data
    data_range = float(hr.max() - hr.min())
    _check_against_skimage(lr[12], hr[12], data_range)  # one sagittal slice, 2D
    _check_against_skimage(lr, hr, data_range)  # the block, 3D window


def test_real_cardiac_frame_agrees_with_skimage(cardiac):
    hr = cardiac.data[:, 0]
    lr = preset("cardiac_x4_noise_free")(cardiac)
    from mrisr.evaluation.baselines import resample
    up = resample(lr, cardiac, order=1).data[:, 0]
    _check_against_skimage(up[5], hr[5], 255.0)


def test_mask_restricts_the_score_to_its_voxels():
    rng = np.random.default_rng(1)
    target = rng.random((30, 30)).astype(np.float32)
    pred = target + 0.05 * rng.standard_normal(target.shape).astype(np.float32)
    pred[:10] += 1.0  # a large error outside the mask
    mask = np.zeros(target.shape, bool)
    mask[12:, 5:25] = True
    expected = peak_signal_noise_ratio(target[mask].astype(np.float64), pred[mask].astype(np.float64), data_range=1.0)
    assert abs(psnr(pred, target, 1.0, mask) - expected) < 1e-4
    assert psnr(pred, target, 1.0) < expected - 5
    smap = structural_similarity(target.astype(np.float64), pred.astype(np.float64), data_range=1.0,
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)[1]
    assert abs(ssim(pred, target, 1.0, mask) - smap[5:-5, 5:-5][mask[5:-5, 5:-5]].mean()) < 1e-5


def test_hfen_is_the_relative_laplacian_of_gaussian_error():
    rng = np.random.default_rng(2)
    target = ndimage.gaussian_filter(rng.random((24, 28, 32)), 1.0)
    pred = target + 0.01 * rng.standard_normal(target.shape)
    log = lambda x: ndimage.gaussian_laplace(x, 1.5, truncate=7 / 1.5)  # noqa: E731  (15 taps, as the paper)
    expected = np.linalg.norm(log(pred) - log(target)) / np.linalg.norm(log(target))
    assert abs(hfen(pred, target) - expected) < 1e-4 * expected
    assert hfen(target, target) == 0.0
    blurred = ndimage.gaussian_filter(target, 1.0)
    assert hfen(blurred, target) > hfen(pred, target)  # blur loses the fine detail HFEN measures


def test_batches_score_each_image_and_pooled_scores_the_whole():
    rng = np.random.default_rng(3)
    target = torch.rand(3, 1, 20, 20, 20)
    pred = target + 0.1 * torch.from_numpy(rng.standard_normal(target.shape).astype(np.float32))
    for fn in (lambda p, t, **k: psnr(p, t, 1.0, **k), lambda p, t, **k: ssim(p, t, 1.0, **k), nrmse, hfen):
        per_item = fn(pred, target, ndim=3)
        assert per_item.shape == (3, 1) and isinstance(per_item, torch.Tensor)
        assert abs(float(per_item[1, 0]) - fn(pred[1, 0].numpy(), target[1, 0].numpy())) < 1e-5
    pooled = psnr(pred, target, 1.0, ndim=3, pooled=True)
    assert abs(float(pooled) - psnr(pred.numpy().ravel(), target.numpy().ravel(), 1.0)) < 1e-4


def test_fastai_metric_wrappers_average_over_the_batch():
    target = torch.rand(4, 1, 16, 16, 16)
    pred = target + 0.05 * torch.randn_like(target)
    learn = SimpleNamespace(pred=pred, yb=(target,), to_detach=lambda x: x.detach())
    for metric in fastai_metrics(data_range=1.0):
        metric.reset()
        metric.accumulate(learn)
        expected = {"psnr": lambda: psnr(pred, target, 1.0, ndim=3), "ssim": lambda: ssim(pred, target, 1.0, ndim=3),
                    "hfen": lambda: hfen(pred, target, ndim=3)}[metric.name]().mean()
        assert abs(float(metric.value) - float(expected)) < 1e-5


def test_otsu_matches_skimage_on_real_knee(dess_block):
    ours = float(otsu_threshold(torch.from_numpy(dess_block.data), 3))
    bin_width = float(np.ptp(dess_block.data)) / 256
    assert abs(ours - threshold_otsu(dess_block.data)) <= bin_width


def test_foreground_mask_finds_the_phantom_knee_and_the_real_one(dess):
    labels = knee_labels(seed=0)
    mask = foreground_mask(knee_phantom(seed=0))
    tissue = labels != Tissue.AIR
    dice = 2 * np.sum(mask & tissue) / (mask.sum() + tissue.sum())
    assert dice > 0.95
    real = foreground_mask(dess)
    assert real.shape == dess.shape and not real[:, :8, :8].any()  # the corners are air
    air = np.median(dess.data[:, :16, :16])
    assert real[dess.data > 3 * air].mean() > 0.95  # dark tissue (DESS muscle, marrow) is in, not only bright tissue
    assert (~real)[dess.data < 1.2 * air].mean() > 0.95  # air is out


@pytest.mark.parametrize("make, message", [
    (lambda: psnr(np.zeros((8, 8)), np.zeros((8, 8)), 0.0), "data_range must be > 0"),
    (lambda: psnr(np.zeros((8, 8)), np.zeros((8, 9)), 1.0), "shapes differ"),
    (lambda: psnr(np.zeros((8, 8)), np.ones((8, 8)), 1.0, mask=np.zeros((8, 8), bool)), "mask is empty"),
    (lambda: ssim(np.zeros((8, 8)), np.zeros((8, 8)), 1.0), "larger than its 11-voxel window"),
    (lambda: hfen(np.zeros((4, 8, 8, 8)), np.zeros((4, 8, 8, 8))), "2 or 3 image axes"),
])
def test_bad_input_gets_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()
