"""Training on the real samples with tiny models: it learns, beats the baseline on held-out data, checkpoints."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import torch

from mrisr.errors import InputError
from benchmarks.settings import NAIVE, backend
from mrisr.training.callbacks import DeviceSmoothLoss
from mrisr.training.checkpoint import save_checkpoint
from mrisr.training.config import ExperimentConfig
from mrisr.training.train import load_model, sr_learner

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def knee_run(dess_dir, tmp_path_factory):
    """A tiny EDSR3D trained for 6 short epochs on the DESS knee, validated on a disjoint slab of it."""
    torch.manual_seed(0)
    config = ExperimentConfig(name="tiny-knee", train_paths=[str(dess_dir)],
                              degradation="knee_fast_acquisition_blur_noise_free",
                              n_feats=16, n_blocks=2, patch_size=[16, 32, 32], patches_per_epoch=64,
                              valid_patches_per_subject=16, batch_size=8, epochs=6, lr_max=1e-3,
                              holdout_margin_mm=6.0, run_dir=str(tmp_path_factory.mktemp("run")))
    learn = sr_learner(config, progress=False)
    baseline = torch.stack([learn.loss_func(x, y) for x, y in learn.dls.valid]).mean()  # the input's own loss
    learn.fit_one_cycle(config.epochs, config.lr_max)
    return learn, config, float(baseline)


def test_training_lowers_validation_loss_and_beats_the_baseline_on_the_held_out_slab(knee_run, capsys):
    learn, config, baseline = knee_run
    assert [s.name for s in learn.resample_patches.sampler.subjects] == ["knee_dess_sample", "knee_dess_sample:holdout"]
    valid_losses = [row[1] for row in learn.recorder.values]
    assert valid_losses[-1] < valid_losses[0]
    assert min(valid_losses) < 0.9 * baseline  # at least 10 % lower loss than the blurred input itself
    assert isinstance(learn.recorder.smooth_loss, DeviceSmoothLoss)  # kept on the device during the fit
    assert learn.recorder.losses and all(not torch.is_tensor(v) or v.device.type == "cpu"
                                         for v in learn.recorder.losses)  # on the CPU after it, for plots
    names = learn.recorder.metric_names
    assert {"l1_loss", "psnr", "gain_db", "ssim", "hfen"} <= set(names)  # the recipe's pixel loss, L1
    gains = [row[names.index("gain_db") - 1] for row in learn.recorder.values]  # values skip the epoch column
    assert gains[-1] > 0  # better than its own input on the held-out slab, as the loss says


def test_checkpoint_carries_the_config_and_gives_identical_predictions(knee_run, tmp_path):
    learn, config, _ = knee_run
    model, loaded = load_model(f"{config.run_dir}/best.pth")
    assert loaded == config
    x = torch.rand(1, 1, 10, 20, 20)
    trained = {k: v.cpu() for k, v in learn.model.state_dict().items()}
    assert trained.keys() == model.state_dict().keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    learn.model.eval()
    device = next(learn.model.parameters()).device
    with torch.no_grad(), backend(NAIVE):  # strict fp32 on CUDA too (PyTorch's default convs there are TF32)
        torch.testing.assert_close(model(x), learn.model(x.to(device)).cpu(), rtol=0,
                                   atol=0 if device.type == "cpu" else 1e-5)  # other kernels on CUDA: rounding
    again = save_checkpoint(model, loaded, tmp_path / "copy.pth")
    assert torch.equal(load_model(again)[0](x), model(x))


def test_lr_find_and_show_results(knee_run):
    learn, _, _ = knee_run
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    suggestion = learn.lr_find(show_plot=False, num_it=12)
    assert suggestion.valley > 0
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())  # lr_find restores
    learn.show_results(max_n=2)
    assert len(matplotlib.pyplot.gcf().axes) == 6  # 2 rows of input | target | prediction


def test_cardiac_2d_learner_with_perceptual_loss_logs_both_terms(sample_data, tmp_path):
    config = ExperimentConfig(name="tiny-heart", model="srresnet2d", upsampler="nearest", scale=4, n_feats=8,
                              loss="mse", n_blocks=1,
                              train_paths=[str(sample_data / "cardiac_acdc_cine_slice" / "demo_data.mat")],
                              load_options={"axes": "RCT"}, degradation="cardiac_x4_noise_free", holdout_slab=0.3,
                              holdout_axis=2,
                              holdout_margin_mm=8, patch_size=32, patches_per_epoch=8, valid_patches_per_subject=4,
                              batch_size=4, epochs=1, perceptual_weight=0.01,
                              vgg_weights=str(sample_data / "vgg16" / "vgg16_features_block1-3.pth"),
                              vgg_normalization="caffe", run_dir=str(tmp_path))
    learn = sr_learner(config, progress=False)
    x, y = learn.dls.one_batch()
    assert x.shape == (4, 1, 8, 8) and y.shape == (4, 1, 32, 32)
    learn.fit(1, 1e-3)
    names, values = learn.recorder.metric_names[1:-1], learn.recorder.values[-1]
    logged = dict(zip(names, values))
    assert logged["mse_loss"] > 0 and logged["perceptual_loss"] > 0
    assert logged["valid_loss"] == pytest.approx(logged["mse_loss"] + 0.01 * logged["perceptual_loss"], rel=1e-4)


def test_config_json_round_trip_and_errors(tmp_path):
    config = ExperimentConfig(name="x", train_paths=["a.nii.gz"], degradation={"name": "mine", "ndim": 3, "steps": [
        {"step": "GaussianBlur", "sigma": 1.0}]}, patch_size=[16, 32, 32], mixed_precision=None)
    assert ExperimentConfig.from_json(config.to_json()) == config
    assert config.get_degradation().steps[0].sigma == 1.0
    with pytest.raises(ValueError, match="unknown config keys"):
        ExperimentConfig.from_dict({"nmae": "typo"})
    with pytest.raises(ValueError, match="model must be one of"):
        ExperimentConfig(model="unet")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_model(tmp_path / "none.pth")
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not an mrisr checkpoint"):
        load_model(tmp_path / "other.pth")


def test_device_smooth_loss_equals_fastais():
    from types import SimpleNamespace

    from fastai.learner import AvgSmoothLoss

    ours, theirs = DeviceSmoothLoss(0.9), AvgSmoothLoss(0.9)
    for metric in (ours, theirs):
        metric.reset()
        for value in (3.0, 1.0, 2.5, 0.5):
            metric.accumulate(SimpleNamespace(loss=torch.tensor([value, value + 1.0])))
    assert ours.count == theirs.count == 4
    torch.testing.assert_close(ours.value, theirs.value)


def test_two_cpu_runs_with_one_seed_are_bit_identical(dess_block, tmp_path):
    """Python's random (the DataLoader's shuffle), numpy, torch and the worker process that cuts the patches are all
    seeded from the config's seed (`tests/test_resume.py` covers the in-process loader)."""
    from mrisr.data.cases import split_slabs
    from mrisr.data.pipeline import prepare_subject
    from mrisr.physics.degrade import preset

    train, held_out = split_slabs(dess_block, holdout=0.3, margin_mm=3.0, axis=1)
    subjects = [prepare_subject(train, preset("knee_fast_acquisition_blur_noise_free"), "train"),
                prepare_subject(held_out, preset("knee_fast_acquisition_blur_noise_free"), "valid")]
    weights = []
    for run in range(2):
        config = ExperimentConfig(name="seeded", n_feats=4, n_blocks=1, patch_size=16, patches_per_epoch=16,
                                  valid_patches_per_subject=4, batch_size=4, epochs=2,
                                  degradation="knee_fast_acquisition_blur_noise_free",
                                  run_dir=str(tmp_path / f"run{run}"), num_workers=1)
        learn = sr_learner(config, subjects=subjects, device="cpu", progress=False, valid_names=["valid"])
        learn.fit(2, 1e-3)
        weights.append({k: v.clone() for k, v in learn.model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_deterministic_algorithms_hold_for_the_fit_only(dess_block, tmp_path):
    from fastai.callback.core import Callback

    from mrisr.data.cases import split_slabs
    from mrisr.data.pipeline import prepare_subject
    from mrisr.physics.degrade import preset

    class Probe(Callback):
        def before_batch(self):
            self.seen = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                         torch.backends.cudnn.benchmark)

    train, held_out = split_slabs(dess_block, holdout=0.3, margin_mm=3.0, axis=1)
    subjects = [prepare_subject(part, preset("knee_fast_acquisition_blur_noise_free"), name)
                for part, name in ((train, "train"), (held_out, "valid"))]
    config = ExperimentConfig(n_feats=4, n_blocks=1, patch_size=16, patches_per_epoch=4, valid_patches_per_subject=4,
                              batch_size=4, epochs=1,
                              degradation="knee_fast_acquisition_blur_noise_free",
                              deterministic=True, run_dir=str(tmp_path))
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    torch.backends.cudnn.benchmark = True  # a user's own setting, restored after the fit
    try:
        learn = sr_learner(config, subjects=subjects, device="cpu", progress=False, valid_names=["valid"])
        probe = Probe()
        learn.fit(1, 1e-3, cbs=[probe])
        after = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                 torch.backends.cudnn.benchmark)
    finally:
        torch.backends.cudnn.benchmark = before[2]
    assert probe.seen == (True, True, False)
    assert after == (*before[:2], True)
    saved = {name: (tmp_path / name).read_bytes() for name in ("best.pth", "last.pth")}
    learn.validate()  # ends with after_epoch too, but it is no training epoch: the checkpoints stay as they are
    assert {name: (tmp_path / name).read_bytes() for name in saved} == saved


def test_a_config_written_with_case_names_loads_as_paths():
    """Checkpoints from before the split held paths (``cases`` paths, ``valid_cases`` / ``test_cases`` names)."""
    old = {"name": "old", "cases": ["k/a.nii.gz", "k/b.nii.gz", "k/c.nii.gz", "k/d.nii.gz"], "valid_cases": ["c"],
           "test_cases": ["d"], "patches_per_subject": 16}
    assert ExperimentConfig.from_dict(old).patches_per_epoch == 32  # 16 for each of the two training knees
    split = ExperimentConfig.from_dict(old).split
    assert split.train == (Path("k/a.nii.gz"), Path("k/b.nii.gz"))
    assert split.valid == (Path("k/c.nii.gz"),) and split.test == (Path("k/d.nii.gz"),)
