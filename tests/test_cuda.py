"""The same degradations and scores on a CUDA GPU as on the CPU (skipped where torch sees no GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrisr.imaging import metrics
from mrisr.physics.degrade import Degradation, RicianNoise, preset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("name", ["knee_fast_acquisition_noise_free", "knee_fast_acquisition_blur_noise_free",
                                  "cardiac_x4_noise_free"])
def test_presets_on_gpu_batches_match_cpu(dess_block, name):
    spec = preset(name)
    batch = torch.from_numpy(np.stack([dess_block.data, dess_block.data[::-1].copy()]))[:, None]
    kwargs = {"phase_encoding_axes": (0, 2)} if spec.ndim == 3 else {}
    cpu = spec(batch, **kwargs)
    gpu = spec(batch.cuda(), **kwargs)
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-3 * float(batch.max()))
    half = spec(batch.cuda().to(torch.bfloat16), **kwargs)
    assert half.dtype == torch.bfloat16


def test_noise_on_gpu_is_reproducible(dess_block):
    spec = Degradation([RicianNoise(20.0)])
    x = torch.from_numpy(dess_block.data).cuda()
    assert torch.equal(spec(x, seed=3), spec(x, seed=3)) and not torch.equal(spec(x, seed=3), spec(x, seed=4))


def test_metrics_on_gpu_match_cpu(dess_block):
    hr = torch.from_numpy(dess_block.data)
    lr = preset("knee_fast_acquisition_noise_free")(hr, phase_encoding_axes=(0, 2))
    data_range = float(hr.max() - hr.min())
    for fn in (lambda p, t: metrics.psnr(p, t, data_range), lambda p, t: metrics.ssim(p, t, data_range),
               metrics.nrmse, metrics.hfen):
        assert abs(float(fn(lr.cuda(), hr.cuda())) - float(fn(lr, hr))) < 1e-4


@pytest.mark.parametrize("name", ["knee_fast_acquisition_noise_free", "knee_thick_slices_noise_free"])
def test_data_consistency_on_gpu_matches_cpu(dess_block, name):
    from mrisr.physics.consistency import enforce

    spec = preset(name)
    hr = dess_block.with_data(dess_block.data[:18])
    lr = spec(hr)
    guess = hr.with_data(hr.data + 0.02 * float(hr.data.max()) * np.random.default_rng(0).standard_normal(hr.shape))
    cpu, gpu = enforce(guess, lr, spec), enforce(guess, lr, spec, device="cuda")
    np.testing.assert_allclose(gpu.data, cpu.data, rtol=0, atol=1e-3 * float(hr.data.max()))
