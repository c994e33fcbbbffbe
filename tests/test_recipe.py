"""The training recipe's pieces on the real DESS slabs: the gain over the input, the pixel losses, residual-weighted
sampling, the weight average, on-the-fly degradation along the phase-encoding axes, lr_find as the default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from mrisr.data.pipeline import PatchRef, PatchSampler, prepare_subject
from mrisr.imaging.metrics import gain_db
from mrisr.networks.losses import SRLoss, charbonnier_loss
from mrisr.physics.degrade import preset
from mrisr.training.callbacks import WeightEMA
from mrisr.training.config import ExperimentConfig
from mrisr.training.train import fit, sr_learner


@pytest.fixture(scope="module")
def slabs(sample_data, tmp_path_factory, monkeypatch_module):
    from mrisr.data.samples import knee_slabs

    monkeypatch_module.setenv("MRISR_SAMPLE_DATA", str(sample_data))
    return knee_slabs(tmp_path_factory.mktemp("slabs"), n=4, columns=128)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _config(slabs, tmp_path, **changes) -> ExperimentConfig:
    values = dict(name="recipe", train_paths=[str(p) for p in slabs[:2]], valid_paths=[str(slabs[2])], n_feats=8,
                  n_blocks=1, patch_size=16, patches_per_epoch=32, valid_patches_per_subject=8, batch_size=8,
                  epochs=1, augment=False, run_dir=str(tmp_path))
    return ExperimentConfig(**{**values, **changes})


def test_gain_db_is_the_psnr_difference_that_scikit_image_measures():
    torch.manual_seed(0)
    target = torch.rand(3, 1, 8, 12, 12)
    inputs = target + 0.1 * torch.randn_like(target)
    pred = target + 0.05 * torch.randn_like(target)
    gain = gain_db(pred, inputs, target)
    for k in range(3):
        expected = (peak_signal_noise_ratio(target[k].numpy(), pred[k].numpy(), data_range=1.0)
                    - peak_signal_noise_ratio(target[k].numpy(), inputs[k].numpy(), data_range=1.0))
        assert float(gain[k]) == pytest.approx(expected, abs=1e-4)
    assert float(gain_db(inputs, inputs, target).abs().max()) == 0.0  # doing nothing gains nothing
    coarse = torch.rand(2, 1, 6, 6)  # scale 2 in 2D: the input is compared after linear interpolation
    upsampled = torch.nn.functional.interpolate(coarse, size=(12, 12), mode="bilinear", align_corners=False)
    assert float(gain_db(upsampled, coarse, torch.rand(2, 1, 12, 12)).abs().max()) < 1e-5


def test_pixel_losses():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 1, 6, 6), torch.rand(2, 1, 6, 6)
    l1 = float((pred - target).abs().mean())
    assert float(SRLoss(pixel="l1")(pred, target)) == pytest.approx(l1)
    charbonnier = SRLoss(pixel="charbonnier")
    value = float(charbonnier(pred, target))
    assert l1 < value < l1 + 1e-3 and set(charbonnier.terms) == {"charbonnier"}
    assert float(charbonnier_loss(pred, target, epsilon=1e-6)) == pytest.approx(l1, rel=1e-5)
    with pytest.raises(ValueError, match="pixel loss"):
        SRLoss(pixel="l3")
    with pytest.raises(ValueError, match="loss must be one of"):
        ExperimentConfig(loss="huber")


def test_residual_sampling_puts_patches_where_the_scans_differ(slabs):
    from mrisr.io import load_volume

    subject = prepare_subject(load_volume(slabs[0]), preset("knee_fast_acquisition_noise_free"), "slab")
    assert subject.residual is not None and len(subject.residual) == len(subject.foreground)

    def mean_difference(sampler):
        total = 0.0
        for k in range(48):
            ref = PatchRef(0, k, False)
            total += float((sampler.hr_patch(ref) - sampler.lr_patch(ref)).abs().mean())
        return total / 48

    uniform = mean_difference(PatchSampler([subject], 16, seed=0))
    weighted = mean_difference(PatchSampler([subject], 16, seed=0, residual_sampling=True))
    assert weighted > 1.15 * uniform


def test_degrade_on_the_fly_acts_along_the_phase_encoding_axes(slabs, tmp_path):
    config = _config(slabs, tmp_path, degradation="knee_fast_acquisition_noise_free", degrade_on_the_fly=True)
    learn = sr_learner(config, progress=False)
    subject = learn.resample_patches.sampler.subjects[0]
    assert subject.lr is None and subject.phase_encoding_axes == (0, 2)
    x, y = learn.dls.one_batch()
    expected = preset("knee_fast_acquisition_noise_free")(y.as_subclass(torch.Tensor), phase_encoding_axes=(0, 2))
    torch.testing.assert_close(x.as_subclass(torch.Tensor), expected)
    fit(learn, config)
    assert np.isfinite(learn.recorder.values[-1]).all()


def test_weight_average_is_what_validates_and_what_remains(slabs, tmp_path):
    config = _config(slabs, tmp_path, ema=0.5, lr_max=1e-3)
    learn = sr_learner(config, progress=False)
    fit(learn, config)
    ema = next(cb for cb in learn.cbs if isinstance(cb, WeightEMA))
    model = learn.model.state_dict()
    average = ema.average.module.state_dict()
    assert all(torch.equal(model[k], average[k]) for k in model)  # validated and saved: the average
    assert any(not torch.equal(model[k], ema.raw[k]) for k in model)  # the raw weights differ from it
    saved = torch.load(tmp_path / "best.pth", weights_only=True)["model"]
    assert all(torch.equal(saved[k], model[k].cpu()) for k in model)


def test_fit_takes_lr_finds_valley_when_lr_max_is_none(slabs, tmp_path, monkeypatch):
    config = _config(slabs, tmp_path, lr_max=None, warmup=0.1)
    learn = sr_learner(config, progress=False)
    calls = {}
    monkeypatch.setattr(learn, "lr_find", lambda **kw: type("Suggestion", (), {"valley": 3.7e-4})())
    monkeypatch.setattr(learn, "fit_one_cycle", lambda epochs, lr, **kw: calls.update(epochs=epochs, lr=lr, **kw))
    assert fit(learn, config) == pytest.approx(3.7e-4)
    assert calls == {"epochs": 1, "lr": pytest.approx(3.7e-4), "pct_start": 0.1}
