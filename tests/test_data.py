"""The fastai volume pipeline on the real knee and heart: aligned patches, tissue sampling, splits, transforms."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from mrisr import Volume
from mrisr.data.blocks import HRVolume, LRVolume
from mrisr.data.cases import split_slabs
from mrisr.data.pipeline import (DegradeBatch, PatchRef, PatchSampler, RandomFlipPermute, permutable_axes,
                                 prepare_subject, sr_dataloaders)
from mrisr.physics.degrade import Degradation, Downsample, GaussianBlur, Upsample, preset

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def knee_subjects(dess):
    """The DESS knee (central 256 x 256) as a training part and a disjoint hold-out slab, blur-degraded."""
    crop = Volume(dess.data[:, 128:384, 128:384], dess.affine, dess.meta)
    train, holdout = split_slabs(crop, holdout=0.25, margin_mm=6.0)
    spec = preset("knee_fast_acquisition_blur_noise_free")
    return [prepare_subject(train, spec, "knee"), prepare_subject(holdout, spec, "knee:holdout")], crop


def test_slab_hold_out_is_disjoint_with_a_margin(knee_subjects):
    (train, holdout), crop = knee_subjects
    a, b = split_slabs(crop, holdout=0.25, margin_mm=6.0)
    assert a.shape[0] + b.shape[0] + 4 == crop.shape[0]  # 6 mm margin = 4 slices of 1.5 mm
    gap_mm = (b.affine @ [0, 0, 0, 1])[:3] - (a.affine @ [a.shape[0] - 1, 0, 0, 1])[:3]
    assert np.linalg.norm(gap_mm) == pytest.approx(5 * 1.5, rel=1e-4)  # next slice after the margin
    np.testing.assert_array_equal(b.data, crop.data[-b.shape[0]:])
    assert train.hr.dtype == torch.float16 and train.hr.shape == (1, *a.shape)
    np.testing.assert_allclose(train.hr[0].float().numpy() * train.intensity_scale, a.data, rtol=2e-3, atol=1.0)
    with pytest.raises(ValueError, match="cannot hold out"):
        split_slabs(crop, holdout=0.9, margin_mm=200)


def test_degrading_the_hr_patch_gives_the_lr_patch_away_from_borders(knee_subjects, cardiac):
    (train, _), _ = knee_subjects
    sampler = PatchSampler([train], 24, seed=3)
    spec = preset("knee_fast_acquisition_blur_noise_free")
    for k in range(4):
        ref = PatchRef(0, k, False)
        hr, lr = sampler.hr_patch(ref), sampler.lr_patch(ref)
        again = spec(hr, phase_encoding_axes=(0, 2))
        inner = (slice(None), slice(5, -5), slice(5, -5), slice(5, -5))  # beyond the blur kernel's reach
        torch.testing.assert_close(again[inner], lr[inner], atol=2e-3, rtol=0)
    heart = prepare_subject(cardiac, preset("cardiac_x4_noise_free"), "heart")
    assert heart.factors == (4, 4) and heart.hr.shape == (30, 184, 256) and heart.lr.shape == (30, 46, 64)
    sampler = PatchSampler([heart], 96, seed=0)
    ref = PatchRef(0, 1, False)
    hr, lr = sampler.hr_patch(ref), sampler.lr_patch(ref)
    assert hr.shape == (1, 96, 96) and lr.shape == (1, 24, 24)
    again = preset("cardiac_x4_noise_free")(hr)
    torch.testing.assert_close(again[:, 6:-6, 6:-6], lr[:, 6:-6, 6:-6], atol=3e-3, rtol=0)


def test_patches_land_on_tissue(knee_subjects):
    (train, _), _ = knee_subjects
    tissue = train.hr.float() > train.tissue_level
    assert 0.2 < float(tissue.float().mean()) < 0.9  # the volume has air to avoid

    def tissue_fractions(foreground_fraction):
        sampler = PatchSampler([train], 16, foreground_fraction, seed=0, min_tissue=0.6)
        return np.array([sampler.tissue_fraction(train, sampler.location(PatchRef(0, k, False))) for k in range(60)])

    guided, uniform = tissue_fractions(1.0), tissue_fractions(0.0)
    assert np.mean(guided >= 0.6) > 0.95 and guided.mean() > uniform.mean() + 0.1


def test_aligned_patches_start_at_multiples_of_the_alignment(knee_subjects):
    (train, _), _ = knee_subjects
    starts = {align: [PatchSampler([train], 16, seed=0, align=align).location(PatchRef(0, k, False))[1]
                      for k in range(40)] for align in ((1, 1, 1), (4, 1, 1))}
    assert all(start[0] % 4 == 0 for start in starts[(4, 1, 1)])
    assert any(start[0] % 4 for start in starts[(1, 1, 1)])  # unaligned, some would not be
    with pytest.raises(ValueError, match="multiple of the alignment"):
        PatchSampler([train], 16, align=(3, 1, 1))


def test_validation_patches_stay_training_patches_move(knee_subjects):
    (train, holdout), _ = knee_subjects
    sampler = PatchSampler([train, holdout], 16, seed=0)
    first = [sampler.location(PatchRef(i, k, i == 1)) for i in (0, 1) for k in range(5)]
    sampler.epoch = 1
    second = [sampler.location(PatchRef(i, k, i == 1)) for i in (0, 1) for k in range(5)]
    assert first[5:] == second[5:] and first[:5] != second[:5]
    assert PatchSampler([train], 16, seed=0).location(PatchRef(0, 2, False)) == first[2]  # reproducible


def test_dataloaders_split_by_subject_and_show(knee_subjects):
    (train, holdout), _ = knee_subjects
    dls, sampler = sr_dataloaders([train, holdout], ["knee:holdout"], patch_size=16, patches_per_subject=12,
                                  valid_patches_per_subject=6, batch_size=4, device="cpu")
    assert {ref.subject for ref in dls.train.items} == {0} and {ref.subject for ref in dls.valid.items} == {1}
    x, y = dls.one_batch()
    assert isinstance(x, LRVolume) and isinstance(y, HRVolume) and x.shape == y.shape == (4, 1, 16, 16, 16)
    dls.show_batch(max_n=2)
    fig = matplotlib.pyplot.gcf()
    assert len(fig.axes) == 4  # 2 rows of input | target
    with pytest.raises(ValueError, match="not among the subjects"):
        sr_dataloaders([train, holdout], ["knee:other"], patch_size=16)
    with pytest.raises(ValueError, match="keep at least one for training"):
        sr_dataloaders([train, holdout], ["knee", "knee:holdout"], patch_size=16)


def test_only_axes_degraded_alike_are_permuted(knee_subjects):
    (train, _), crop = knee_subjects
    # Rows (readout, untouched) and columns (phase encoded, blurred) share 0.3125 mm but not the degradation.
    assert train.phase_encoding_axes == (0, 2) and permutable_axes(train) == ()
    alike = prepare_subject(crop, Degradation([GaussianBlur(1.0)], name="isotropic blur"), "knee")
    assert permutable_axes(alike) == (1, 2)  # 0.3125 mm rows and columns; the 1.5 mm slice axis stays put
    in_plane = prepare_subject(crop, Degradation([Downsample(2, axes=(1, 2)), Upsample(2, axes=(1, 2))]), "knee")
    assert permutable_axes(in_plane) == (1, 2)
    rows_only = prepare_subject(crop, Degradation([Downsample(2, axes=(1,)), Upsample(2, axes=(1,))]), "knee")
    assert permutable_axes(rows_only) == ()


def test_flip_permute_acts_identically_on_input_and_target():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 6, 7, 7)
    aug = RandomFlipPermute(3, permutable=(1, 2))
    out_x, out_y = aug((LRVolume(x), HRVolume(x.clone())), split_idx=0)
    assert torch.equal(out_x.as_subclass(torch.Tensor), out_y.as_subclass(torch.Tensor))
    assert not torch.equal(out_x.as_subclass(torch.Tensor), x)
    assert out_x.shape == x.shape
    unchanged = aug((LRVolume(x), HRVolume(x)), split_idx=1)  # validation: no augmentation
    assert torch.equal(unchanged[0].as_subclass(torch.Tensor), x)


def test_degrade_on_the_fly_matches_degrading_each_patch(dess):
    crop = Volume(dess.data[:24, 200:296, 200:296], dess.affine, dess.meta)
    subject = prepare_subject(crop, None, "raw")
    assert subject.lr is None
    spec = preset("knee_fast_acquisition_noise_free")
    batch = torch.stack([PatchSampler([subject], 16).hr_patch(PatchRef(0, k, False)) for k in range(3)])
    out = DegradeBatch(spec, phase_encoding_axes=(0, 2))(LRVolume(batch))
    assert isinstance(out, LRVolume)
    for k in range(3):
        torch.testing.assert_close(out[k].as_subclass(torch.Tensor), spec(batch[k], phase_encoding_axes=(0, 2)))
