"""Sliding-window inference: exact against one full pass, geometry of scale > 1, out-of-memory retries, budgets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrisr import Volume
from mrisr.inference.tiled import choose_tiling, model_geometry, predict_volume, tile_starts
from mrisr.networks.models import EDSR3D, SRResNet2D


def _random(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight random, so each voxel of the output depends on its whole receptive field."""
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def _full_pass(model, x: np.ndarray, halo: int) -> np.ndarray:
    """The network run once over the whole reflect-padded input, the padding's output cut off."""
    ndim, scale, _ = model_geometry(model)
    images = x.reshape(-1, *x.shape[-ndim:])
    padded = np.pad(images, [(0, 0)] + [(halo, halo)] * ndim, mode="reflect")
    with torch.no_grad():
        out = model(torch.from_numpy(padded[:, None]))[:, 0].numpy()
    out = out[(slice(None),) + (slice(halo * scale, -halo * scale),) * ndim]
    return out.reshape(*x.shape[:-ndim], *out.shape[1:])


CASES = [
    (EDSR3D(n_feats=8, n_blocks=2), (13, 21, 18)),
    (EDSR3D(n_feats=8, n_blocks=1, scale=2, upsampler="pixelshuffle"), (9, 11, 14)),
    (EDSR3D(n_feats=8, n_blocks=1, scale=2, upsampler="transposed"), (9, 11, 14)),
    (SRResNet2D(n_feats=8, n_blocks=1, scale=4, upsampler="nearest"), (3, 17, 23)),
]


@pytest.mark.parametrize("model, shape", CASES, ids=["edsr3d", "x2-pixelshuffle", "x2-transposed", "2d-x4"])
def test_sliding_window_equals_one_full_pass(model, shape):
    model = _random(model)
    halo = math.ceil(model_geometry(model)[2])
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    given = x.copy()
    reference = _full_pass(model, x, halo)
    ndim = model_geometry(model)[0]
    np.testing.assert_allclose(predict_volume(model, x, channels_last=True, intensity_scale=1.0, device="cpu"),
                               reference, atol=1e-5, rtol=0, err_msg="channels-last memory format")
    for overlap, patch in [(0.0, None), (0.25, 2 * halo + 5), (0.5, 2 * halo + 3),
                           (0.1, [2 * halo + 4, 2 * halo + 7, 2 * halo + 2][:ndim])]:
        out = predict_volume(model, x, tile_size=patch, overlap=overlap, batch_size=3, intensity_scale=1.0,
                             device="cpu")
        assert out.shape == reference.shape
        np.testing.assert_allclose(out, reference, atol=1e-5, rtol=0, err_msg=f"overlap {overlap}, tile {patch}")
    # The halo is what makes tiles exact: with less context than the receptive field, seams appear.
    short = predict_volume(model, x, tile_size=halo + 4, halo=halo // 2, overlap=0.0, intensity_scale=1.0,
                           device="cpu")
    assert np.abs(short - reference).max() > 1e-4  # ten times the tolerance above
    np.testing.assert_array_equal(x, given)  # the caller's array is never changed


def test_scale_two_grid_and_affine():
    model = _random(EDSR3D(n_feats=4, n_blocks=1, scale=2))
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 0.8, 0.6])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    volume = Volume(np.random.default_rng(2).random((6, 10, 12), dtype=np.float32), affine, {"x": 1})
    out = predict_volume(model, volume, device="cpu")
    assert out.shape == (12, 20, 24)
    np.testing.assert_allclose(out.spacing, np.divide(volume.spacing, 2))
    # Output voxel j lies at input voxel (j + 0.5) / 2 - 0.5 along every axis.
    j = np.array([[0, 0, 0], [11, 19, 23], [3, 7, 5]], float)
    in_index = (np.linalg.inv(volume.affine) @ out.affine @ np.c_[j, np.ones(3)].T).T[:, :3]
    np.testing.assert_allclose(in_index, (j + 0.5) / 2 - 0.5, atol=1e-9)
    assert out.meta["x"] == 1 and out.meta["super_resolution"]["scale"] == 2

    # A 2D network scales rows and columns only; the slice axis keeps its spacing and position.
    model2d = _random(SRResNet2D(n_feats=4, n_blocks=1, scale=4))
    out2d = predict_volume(model2d, volume, device="cpu")
    assert out2d.shape == (6, 40, 48)
    np.testing.assert_allclose(out2d.affine[:3, 0], volume.affine[:3, 0])
    np.testing.assert_allclose(out2d.spacing[1:], np.divide(volume.spacing[1:], 4))
    cine = np.random.default_rng(4).random((2, 3, 10, 12), dtype=np.float32)  # (time, slice, row, column)
    frames = predict_volume(model2d, cine, device="cpu")
    assert frames.shape == (2, 3, 40, 48)
    np.testing.assert_allclose(frames[1, 2], predict_volume(model2d, cine[1, 2:3], device="cpu",
                                                            intensity_scale=np.percentile(cine, 99.5))[0], atol=1e-5)


def test_untrained_edsr_returns_its_input_in_the_input_intensities(dess_block):
    """EDSR3D starts as the identity; prediction must undo its own normalisation exactly (real knee block)."""
    model = EDSR3D(n_feats=4, n_blocks=1)
    volume = Volume(dess_block.data[:12, :48, :40], dess_block.affine, dess_block.meta)
    out = predict_volume(model, volume, device="cpu")
    np.testing.assert_allclose(out.data, volume.data, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(out.affine, volume.affine)


class _SmallMemory(torch.nn.Module):
    """Wraps a network and fails like a full GPU when a batch holds more than ``limit`` voxels."""

    def __init__(self, model, limit):
        super().__init__()
        self.model, self.limit, self.ndim, self.scale = model, limit, 3, model.scale
        self.receptive_radius = model.receptive_radius
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        if x.numel() > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.model(x)


def test_out_of_memory_retries_with_smaller_tiles_and_same_result():
    model = _random(EDSR3D(n_feats=4, n_blocks=1))
    x = np.random.default_rng(3).random((10, 30, 26), dtype=np.float32)
    expected = predict_volume(model, x, intensity_scale=1.0, device="cpu")
    small = _SmallMemory(model, limit=16**3)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        out = predict_volume(small, x, tile_size=24, batch_size=4, intensity_scale=1.0, device="cpu")
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    assert small.calls[0][0] == 4 and max(math.prod(c) for c in small.calls[-3:]) <= 16**3

    hopeless = _SmallMemory(model, limit=10)
    with pytest.raises(MemoryError, match="out of memory even with"), pytest.warns(RuntimeWarning):
        predict_volume(hopeless, x, intensity_scale=1.0, device="cpu")


def test_tiling_fits_the_budget_and_the_volume():
    halo, per_voxel = 21, 4 * 64 * 9
    for shape, budget in [((256, 320, 320), 8 << 30), ((256, 512, 512), 6 << 30), ((20, 30, 40), 1 << 30),
                          ((80, 512, 512), 1 << 28)]:
        tiling = choose_tiling(shape, halo, budget, per_voxel)
        assert math.prod(tiling.tile) * per_voxel * tiling.batch_size <= budget
        assert all(2 * halo < t <= n + 2 * halo for t, n in zip(tiling.tile, shape))
    # least work: no cube that fits needs fewer voxels processed than the chosen tile (halos included)
    shape, budget = (256, 320, 320), 12 << 30
    tiling = choose_tiling(shape, halo, budget, per_voxel)

    def work(tile):
        return math.prod(t * len(tile_starts(n, t - 2 * halo, 0.0)) for t, n in zip(tile, shape))

    cubes = [(c, c, c) for c in range(2 * halo + 8, 363, 8) if c**3 * per_voxel <= budget]
    assert cubes and work(tiling.tile) <= min(work([min(t, n + 2 * halo) for t, n in zip(c, shape)]) for c in cubes)
    small = choose_tiling((20, 30, 40), halo, 1 << 30, per_voxel)
    assert small.tile == (62, 72, 82) and small.batch_size == 1  # the whole padded volume in one tile


def test_bad_arguments_say_what_to_change():
    model = EDSR3D(n_feats=4, n_blocks=1)
    x = np.zeros((8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="halo"):
        predict_volume(model, x + 1, tile_size=6, device="cpu")
    with pytest.raises(ValueError, match="overlap"):
        predict_volume(model, x + 1, overlap=1.0, device="cpu")
    with pytest.raises(ValueError, match="empty"):
        predict_volume(model, x, device="cpu")
    with pytest.raises(ValueError, match="needs at least 3 axes"):
        predict_volume(model, np.ones((8, 8), np.float32), device="cpu")
