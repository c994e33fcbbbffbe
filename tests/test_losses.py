"""Perceptual loss with the real VGG16 weights: exact first layer, 2.5D, weight sources and their errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F

from mrisr.errors import InputError
from mrisr.networks.losses import PerceptualLoss, SRLoss, VGG16Features, as_slices


@pytest.fixture(scope="module")
def vgg_path(sample_data):
    return sample_data / "vgg16" / "vgg16_features_block1-3.pth"


@pytest.fixture(scope="module")
def loss(vgg_path):
    return PerceptualLoss(weights=vgg_path, normalization="caffe")


def test_first_layer_equals_a_direct_conv_with_the_caffe_weights(vgg_path):
    state = torch.load(vgg_path, weights_only=True)
    features = VGG16Features(["conv1_1"], vgg_path, "caffe")
    grey = torch.rand(2, 1, 20, 24)
    bgr = grey.expand(-1, 3, -1, -1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    direct = F.relu(F.conv2d(bgr, state["features.0.weight"], state["features.0.bias"], padding=1))
    torch.testing.assert_close(features(grey)[0], direct, rtol=1e-5, atol=1e-3)


def test_zero_for_identical_inputs_and_gradients_flow(loss):
    x = torch.rand(2, 1, 12, 16, 16)
    assert float(loss(x, x)) == 0.0
    pred = (x + 0.1 * torch.randn_like(x)).requires_grad_()
    value = loss(pred, x)
    value.backward()
    assert value > 0 and pred.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.parameters())  # VGG stays frozen
    loss.train()
    assert not loss.vgg.training


def test_volumes_use_slices_along_all_three_axes(loss):
    torch.manual_seed(0)
    pred, target = torch.rand(1, 1, 8, 10, 12), torch.rand(1, 1, 8, 10, 12)
    per_axis = [loss.loss_2d(as_slices(pred, a), as_slices(target, a)) for a in (2, 3, 4)]
    assert as_slices(pred, 3).shape == (10, 1, 8, 12)
    torch.testing.assert_close(loss(pred, target), sum(per_axis) / 3)
    assert len({round(float(v), 6) for v in per_axis}) == 3  # three different views
    image = torch.rand(3, 1, 16, 16)
    torch.testing.assert_close(loss(image, image.flip(-1)), loss.loss_2d(image, image.flip(-1)))


def test_random_slice_subset(vgg_path):
    torch.manual_seed(1)
    pred, target = torch.rand(1, 1, 6, 6, 6), torch.rand(1, 1, 6, 6, 6)
    full = PerceptualLoss(weights=vgg_path, normalization="caffe")
    assert float(PerceptualLoss(weights=vgg_path, normalization="caffe", slices_per_axis=6)(pred, target)) == \
        pytest.approx(float(full(pred, target)))
    target[:, :, 0] = pred[:, :, 0]  # only slice 0 along D agrees
    subset = PerceptualLoss(weights=vgg_path, normalization="caffe", slices_per_axis=2)
    values = {round(float(subset(pred, target)), 6) for _ in range(8)}
    assert len(values) > 1  # different slices drawn per call


def test_loss_scale_does_not_depend_much_on_the_weight_convention(vgg_path):
    x = torch.rand(2, 1, 24, 24)
    y = x + 0.05 * torch.randn_like(x)
    caffe = float(PerceptualLoss(weights=vgg_path, normalization="caffe")(x, y))
    other = float(PerceptualLoss(weights=vgg_path, normalization="imagenet")(x, y))
    assert 0.25 < caffe / other < 4


def test_weights_from_environment_and_from_the_torch_hub_cache(vgg_path, monkeypatch, tmp_path):
    monkeypatch.setenv("MRISR_VGG16_WEIGHTS", str(vgg_path))
    monkeypatch.setenv("MRISR_VGG16_NORMALIZATION", "caffe")
    assert PerceptualLoss().vgg.normalization == "caffe"
    monkeypatch.delenv("MRISR_VGG16_WEIGHTS")
    monkeypatch.delenv("MRISR_VGG16_NORMALIZATION")
    # weights="imagenet" reads torchvision's cached file when it is there (no network needed).
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(torch.load(vgg_path, weights_only=True), cache / "vgg16-397923af.pth")
    cached = PerceptualLoss(weights="imagenet")
    assert cached.vgg.normalization == "imagenet"
    torch.testing.assert_close(cached.vgg.state_dict()["features.0.weight"], torch.load(vgg_path)["features.0.weight"])


def test_weight_errors_say_what_to_do(vgg_path, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(InputError, match="pass weights=PATH"):
        PerceptualLoss(weights="imagenet")
    with pytest.raises(InputError, match=r"missing\.pth: VGG16 weights file not found"):
        PerceptualLoss(weights=tmp_path / "missing.pth")
    with pytest.raises(InputError, match="normalization='caffe'"):
        PerceptualLoss(weights=vgg_path)
    with pytest.raises(InputError, match="has no weights for"):
        PerceptualLoss(layers=("conv4_1",), weights=vgg_path, normalization="caffe")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(InputError, match="bad.pth: cannot be read"):
        PerceptualLoss(weights=bad, normalization="caffe")
    random = PerceptualLoss(weights="random")  # only when asked for by name
    assert random.vgg.normalization == "imagenet"


def test_srloss_logs_each_term(loss):
    x = torch.rand(2, 1, 8, 8, 8)
    y = x + 0.1
    mse_only = SRLoss()
    assert float(mse_only(x, y)) == pytest.approx(0.01, rel=1e-4) and set(mse_only.terms) == {"mse"}
    both = SRLoss(loss, perceptual_weight=0.5)
    total = both(x, y)
    assert float(total) == pytest.approx(float(both.terms["mse"] + 0.5 * both.terms["perceptual"]), rel=1e-5)
    with pytest.raises(ValueError, match="needs a PerceptualLoss"):
        SRLoss(perceptual_weight=1.0)
