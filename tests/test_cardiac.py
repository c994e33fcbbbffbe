"""Cardiac pieces: ACDC-layout discovery on the real cine slice, subject splits, the checkerboard measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrisr import Volume, load_volume, save_volume
from mrisr.data.cases import split_cases
from mrisr.errors import InputError
from mrisr.imaging.spectrum import checkerboard_index
from mrisr.inference.tiled import predict_volume
from mrisr.io.cine import find_cine_cases
from mrisr.networks.models import SRResNet2D
from mrisr.physics.degrade import preset


def test_acdc_layout_is_found_and_read(cardiac, tmp_path):
    for k, frames in [(1, cardiac.data), (2, cardiac.data[::-1])]:
        folder = tmp_path / "training" / f"patient{k:03d}"
        save_volume(Volume(frames, cardiac.affine, cardiac.meta), folder / f"patient{k:03d}_4d.nii.gz")
        (folder / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n")
    cases = find_cine_cases(tmp_path)
    assert list(cases) == ["patient001", "patient002"]
    cine = load_volume(cases["patient002"])
    assert cine.data.shape == (30, 1, 184, 256)
    np.testing.assert_array_equal(cine.data[0], cardiac.data[-1])


def test_plain_folder_of_cines_and_bad_folders(cardiac, tmp_path):
    save_volume(cardiac, tmp_path / "b.nii.gz")
    save_volume(cardiac, tmp_path / "a.nii")
    assert list(find_cine_cases(tmp_path)) == ["a", "b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no ACDC"):
        find_cine_cases(tmp_path / "empty")
    with pytest.raises(InputError, match="no such folder"):
        find_cine_cases(tmp_path / "missing")


def test_one_cine_slice_splits_into_disjoint_train_and_test(cardiac, tmp_path):
    source = save_volume(cardiac, tmp_path / "heart.nii.gz")
    split = split_cases([source], tmp_path / "run", preset("cardiac_x4_noise_free"))
    (train,), (held,) = (load_volume(p) for p in split.train), (load_volume(p) for p in split.test)
    assert split.slab_axis == 2 and split.valid == () and split.names[2] == ["heart_test"]
    assert train.shape[2] % 4 == 0 and held.shape[2] % 4 == 0
    assert train.shape[2] + held.shape[2] + 10 <= 256  # 10 mm margin at 1 mm columns
    np.testing.assert_array_equal(held.data, cardiac.data[..., -held.shape[2]:])
    hearts = [tmp_path / f"heart{k}.nii.gz" for k in range(8)]
    for heart in hearts:
        heart.symlink_to(source)
    split = split_cases(hearts, tmp_path, n_test=3)
    assert split.names == (["heart0", "heart1", "heart2", "heart3"], ["heart4"], ["heart5", "heart6", "heart7"])


def test_checkerboard_index_sees_periodic_patterns_only():
    rng = np.random.default_rng(0)
    target = rng.random((4, 64, 64))
    noisy = target + 0.05 * rng.standard_normal(target.shape)
    checker = noisy + 0.02 * np.tile([[1.0, -1.0], [-1.0, 1.0]], (32, 32))
    tiled = noisy + 0.02 * np.tile(rng.standard_normal((4, 4)), (16, 16))
    assert abs(checkerboard_index(noisy, target, 4)) < 3
    assert checkerboard_index(checker, target, 4) > 10 and checkerboard_index(tiled, target, 4) > 10
    with pytest.raises(ValueError, match="multiple of the scale"):
        checkerboard_index(target[..., :30], target[..., :30], 4)


def test_transposed_upsampler_checkerboards_the_real_heart_at_init(cardiac):
    lr = preset("cardiac_x4_noise_free")(cardiac)
    scores = {}
    for upsampler in ("transposed", "nearest"):
        torch.manual_seed(0)
        sr = predict_volume(SRResNet2D(n_feats=16, n_blocks=2, upsampler=upsampler), lr, device="cpu")
        scores[upsampler] = checkerboard_index(sr.data, cardiac.data, 4)
    assert scores["transposed"] > 10 > 3 > scores["nearest"]
