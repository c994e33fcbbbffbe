"""Networks: sizes, shapes on odd inputs, upsamplers, and the checkerboard of transposed convolution at init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mrisr.networks.models import (EDSR2D, EDSR3D, UPSAMPLERS, SRResNet2D, count_parameters, fold_axis0, pixel_shuffle,
                                   unfold_axis0)


def _conv_params(c_in, c_out, k, ndim):
    return c_in * c_out * k**ndim + c_out


def test_seed_size_parameter_counts():
    f = 64
    edsr = _conv_params(1, f, 3, 3) + 9 * 2 * _conv_params(f, f, 3, 3) + _conv_params(f, f, 3, 3) \
        + _conv_params(f, 1, 3, 3)
    assert count_parameters(EDSR3D()) == edsr == 2_105_985
    body2d = _conv_params(1, f, 3, 2) + 4 * 2 * _conv_params(f, f, 3, 2) + _conv_params(f, f, 3, 2) \
        + _conv_params(f, 1, 3, 2)
    up = {"nearest": _conv_params(f, f, 3, 2), "transposed": _conv_params(f, f, 4, 2),
          "pixelshuffle": _conv_params(f, 4 * f, 3, 2)}
    for kind in UPSAMPLERS:
        assert count_parameters(SRResNet2D(upsampler=kind)) == body2d + 2 * up[kind]


@pytest.mark.parametrize("shape", [(1, 1, 7, 9, 11), (2, 1, 5, 12, 6)])
def test_edsr3d_is_fully_convolutional_on_odd_sizes(shape):
    model = EDSR3D(n_feats=8, n_blocks=2)
    x = torch.rand(shape)
    assert model(x).shape == x.shape
    up = EDSR3D(n_feats=8, n_blocks=1, scale=2, upsampler="nearest")
    assert up(x).shape == (*shape[:2], *[2 * s for s in shape[2:]])


def test_edsr3d_starts_as_the_identity_through_its_global_skip():
    model = EDSR3D(n_feats=8, n_blocks=2)
    x = torch.rand(1, 1, 6, 6, 6)
    assert torch.equal(model(x), x)


@pytest.mark.parametrize("kind", UPSAMPLERS)
def test_each_upsampler_at_x4(kind):
    model = SRResNet2D(n_feats=16, upsampler=kind)
    x = torch.rand(2, 1, 11, 13)
    assert model(x).shape == (2, 1, 44, 52)


def test_transposed_upsampler_checkerboards_a_constant_image_and_nearest_does_not():
    torch.manual_seed(0)
    x = torch.ones(1, 1, 48, 48)
    for kind, periodic in (("transposed", True), ("nearest", False), ("pixelshuffle", False)):
        with torch.no_grad():  # the interior, beyond the reach of the convolutions' zero padding
            out = SRResNet2D(n_feats=16, upsampler=kind).eval()(x)[0, 0, 64:-64, 64:-64]
        even_odd = out[0::2, 0::2].mean() - out[1::2, 1::2].mean()
        spread = float(out.std())
        if periodic:  # a pattern repeating every 2 (and 4) output pixels
            assert spread > 1e-3 and torch.allclose(out[4:, :], out[:-4, :], atol=1e-5) and abs(even_odd) > 1e-4
        else:
            assert spread < 1e-5, (kind, spread)


def test_pixel_shuffle_matches_torch_in_2d_and_is_consistent_in_3d():
    a = torch.rand(2, 12, 3, 5)
    torch.testing.assert_close(pixel_shuffle(a, 2), F.pixel_shuffle(a, 2))
    b = torch.arange(8.0).view(1, 8, 1, 1, 1)  # one voxel, 8 sub-voxels
    out = pixel_shuffle(b, 2)[0, 0]
    assert out.shape == (2, 2, 2) and out[1, 0, 1] == 5  # channel index = 4 d + 2 h + w


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="upsampler must be one of"):
        SRResNet2D(upsampler="bilinear")
    with pytest.raises(ValueError, match="power of 2"):
        EDSR3D(scale=3)


@pytest.mark.parametrize("conv, shape", [(torch.nn.Conv3d(1, 8, 3, padding=1), (2, 1, 6, 7, 8)),
                                         (torch.nn.Conv3d(3, 1, 3, padding=1), (2, 3, 6, 7, 8)),
                                         (torch.nn.Conv2d(1, 1, 3, padding=1), (2, 1, 9, 10))],
                         ids=["3d-head", "3d-three-channels", "2d-one-channel"])
def test_channel_padded_conv_gives_the_same_output_and_gradients(conv, shape):
    from unittest import mock

    from mrisr.training.device import padded_input_channels

    x = torch.rand(shape, requires_grad=True)
    plain = conv(x)
    grads_plain = torch.autograd.grad(plain.square().sum(), [conv.weight, conv.bias, x])
    with mock.patch.object(torch.Tensor, "is_cuda", property(lambda self: True)):  # the CUDA path, on the CPU
        with padded_input_channels(conv) as padded_conv:
            padded = padded_conv(x)
    assert "forward" not in vars(conv)  # the module is itself again
    grads_padded = torch.autograd.grad(padded.square().sum(), [conv.weight, conv.bias, x])
    torch.testing.assert_close(padded, plain, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_padded, grads_plain):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_folding_axis0_into_channels_is_invertible_and_groups_rows_by_phase():
    x = torch.arange(2 * 12 * 5, dtype=torch.float32).view(1, 2, 12, 5)  # 2 channels, 12 rows
    folded = fold_axis0(x, 4)
    assert folded.shape == (1, 8, 3, 5)
    assert torch.equal(folded[0, 1 * 4 + 3, 2], x[0, 1, 4 * 2 + 3])  # channel c * fold + r holds row fold * i + r
    assert torch.equal(unfold_axis0(folded, 4), x)


def test_a_folded_network_starts_as_the_identity_and_sees_fold_times_further_along_axis0():
    plain, folded = EDSR2D(n_feats=8, n_blocks=2), EDSR2D(n_feats=8, n_blocks=2, fold=4)
    x = torch.rand(2, 1, 16, 10)
    assert torch.equal(folded(x), x)
    torch.nn.init.normal_(folded.tail.weight)  # a trained-looking tail: the output depends on a neighbourhood
    y = torch.zeros(1, 1, 64, 9, requires_grad=True)
    folded(y)[0, 0, 32, 4].backward()
    rows = y.grad[0, 0].abs().sum(1).nonzero().flatten()
    reach = int(rows.max() - rows.min())
    assert reach > 2 * plain.receptive_radius() and reach <= 2 * folded.receptive_radius() + 1


def test_a_folded_network_refuses_an_input_it_cannot_fold():
    with pytest.raises(ValueError, match="multiple of 4"):
        EDSR2D(n_feats=8, n_blocks=1, fold=4)(torch.rand(1, 1, 10, 8))
    with pytest.raises(ValueError, match="fold"):
        EDSR2D(fold=2, scale=2)
