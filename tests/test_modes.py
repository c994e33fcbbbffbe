"""The notebooks' modes: which settings a mode and a device pick, and the real data each mode runs on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mrisr import Volume, load_volume
from mrisr.data.cases import Split
from mrisr.errors import InputError
from mrisr.evaluation.tables import HR_LABEL, LR_LABEL, gains_over
from mrisr.modes import EXPERIMENTS, MODES, RECIPE_NAMES, cardiac_cases, experiment, knee_cases
from mrisr.training.config import ExperimentConfig
from mrisr.training.recipes import RECIPES, recipe


def test_samples_on_a_cpu_is_reduced_and_says_so():
    run = experiment("knee3d", "samples", "cpu")
    assert run.reduced and run.recipe.n_feats < RECIPES["knee3d"]["samples"].n_feats
    assert "REDUCED" in str(run) and str(run).startswith("This run: mode samples") and "device CPU" in str(run)
    for name in EXPERIMENTS:  # smoke and full are the same on any device; only samples has a CPU variant
        for mode in MODES:
            column = EXPERIMENTS[name]["samples-cpu" if mode == "samples" else mode]
            run = experiment(name, mode, "cpu")
            assert run.settings == {k: v for k, v in column.items() if k != "recipe"}
            recipes = RECIPES[RECIPE_NAMES[name]]
            assert run.recipe_size == column["recipe"] and run.recipe == recipes.get(column["recipe"])
    if torch.cuda.is_available():
        assert experiment("knee3d", "samples", "cuda").recipe.n_feats == 64


def test_every_recipe_is_a_checked_config_and_sizes_name_them():
    for experiment_name, sizes in RECIPES.items():
        for size, config in sizes.items():
            assert isinstance(config, ExperimentConfig) and recipe(experiment_name, size) == config
    with pytest.raises(ValueError, match="size must be one of full, samples, gpu, samples-cpu, smoke for knee3d"):
        recipe("knee3d", "huge")
    with pytest.raises(ValueError, match="unknown config keys"):
        recipe("knee3d", "smoke", epoch=3)


def test_overrides_replace_only_what_is_given_and_unknown_names_fail():
    run = experiment("cardiac2d", "smoke", "cpu", epochs=3, lr_max=None, seeds=2)
    assert run.recipe.epochs == 3 and run.recipe.lr_max == RECIPES["cardiac2d"]["smoke"].lr_max
    assert run.settings["seeds"] == 2 and run.recipe.n_feats == RECIPES["cardiac2d"]["smoke"].n_feats
    assert experiment("knee3d", "smoke", "cpu", lr_max="find").recipe.lr_max is None  # lr_find's valley
    with pytest.raises(ValueError, match="no setting colour"):
        experiment("cardiac2d", "smoke", "cpu", colour=2)
    with pytest.raises(ValueError, match="n_blocks must be an integer"):
        experiment("cardiac2d", "smoke", "cpu", n_blocks=0)
    with pytest.raises(ValueError, match="mode must be one of smoke, samples, full"):
        experiment("knee3d", "fast", "cpu")


def test_a_size_takes_another_columns_network_and_keeps_the_modes_data():
    run = experiment("knee3d", "full", "cpu", size="smoke")
    smoke, full = EXPERIMENTS["knee3d"]["smoke"], EXPERIMENTS["knee3d"]["full"]
    assert run.recipe == RECIPES["knee3d"]["smoke"] and run.settings["quick_baselines"] == smoke["quick_baselines"]
    assert run.settings["slabs"] is full["slabs"] is None and run.settings["n_test"] == full["n_test"]
    assert str(run).startswith("This run: mode full, at the smoke size") and not run.reduced
    with pytest.raises(ValueError, match="size must be one of"):
        experiment("knee3d", "full", "cpu", size="huge")


def test_the_split_sentence_names_what_the_run_used():
    run = experiment("knee3d", "smoke", "cpu")
    split = Split((Path("a.nii.gz"), Path("b.nii")), (Path("c"),), ())
    assert run.split_text(split) == (
        "**This run's split** (mode smoke, by subject or by a disjoint slab): trains on 2 (`a`, `b`), validates on 1 "
        "(`c`) and tests on none, which training never sees.")


def test_full_mode_without_knees_names_the_folder(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path / "knees")):
        knee_cases(experiment("knee3d", "full", "cpu"), tmp_path / "knees", tmp_path)
    with pytest.raises(ValueError, match="cine_dir"):
        cardiac_cases(experiment("cardiac2d", "full", "cpu"), None, tmp_path)


def test_samples_data_the_joint_slab_tests_and_the_heart_splits_by_subject(sample_data, tmp_path):
    slabs = knee_cases(experiment("knee3d", "samples", "cpu"), "unused", tmp_path)
    assert [p.name for p in slabs] == [f"knee_slab_{k}.nii.gz" for k in (1, 2, 4, 3)]  # the joint slab last
    joint = load_volume(slabs[-1])
    assert joint.shape == (80, 104, 512) and joint.spacing == pytest.approx((1.5, 0.3125, 0.3125), rel=1e-5)
    hearts = cardiac_cases(experiment("cardiac2d", "samples", "cpu"), None, tmp_path)
    assert [p.name for p in hearts] == ["acdc_slice.nii.gz", "acdc_sax.nii.gz", "mnms_sax.nii.gz", "mnms2_sax.nii.gz"]
    stack = load_volume(hearts[-1])
    ed = load_volume(sample_data / "cardiac_sax_frames/mnms2_sax_ed.nii.gz")
    es = load_volume(sample_data / "cardiac_sax_frames/mnms2_sax_es.nii.gz")
    assert stack.data.shape == (2, 12, 192, 192)  # end-diastole and end-systole as two frames, unchanged
    np.testing.assert_array_equal(stack.data[0], ed.data)
    np.testing.assert_array_equal(stack.data[1], es.data)


def test_gains_over_the_input_with_an_interval_over_slices():
    rng = np.random.default_rng(0)
    target = rng.random((12, 40, 40), dtype=np.float32) + 1.0
    noisy = {sigma: target + rng.normal(0, sigma, target.shape).astype(np.float32) for sigma in (0.1, 0.05)}
    volumes = {"case": {LR_LABEL: Volume.from_spacing(noisy[0.1]), "half the noise": Volume.from_spacing(noisy[0.05]),
                        HR_LABEL: Volume.from_spacing(target)}}
    gains = gains_over(volumes)
    row = gains.loc[("case", "half the noise")]
    # Half the noise amplitude is a quarter of the MSE: 10 log10(4) = 6.02 dB on every slice.
    assert row.psnr_gain_db == pytest.approx(6.02, abs=0.2) and row.ci_low < row.psnr_gain_db < row.ci_high
    assert row.ci_high - row.ci_low < 0.3 and row.slices == 12
    assert list(gains.index) == [("case", "half the noise")]  # neither the input nor the reference is a row


def test_gains_over_a_time_series_count_every_frame():
    rng = np.random.default_rng(1)
    target = rng.random((2, 6, 40, 40), dtype=np.float32) + 1.0  # two frames of six slices
    volumes = {"cine": {"cubic": Volume.from_spacing(target + 0.1), "closer": Volume.from_spacing(target + 0.05),
                        HR_LABEL: Volume.from_spacing(target)}}
    row = gains_over(volumes, baseline="cubic").loc[("cine", "closer")]
    assert row.slices == 12 and row.psnr_gain_db == pytest.approx(20 * np.log10(2), abs=1e-3)  # offsets: exact


def test_the_gpu_size_cuts_epochs_not_the_network():
    """The samples set at the ``gpu`` size (tools/gpu_run.sh): the seed's networks, fewer epochs, the samples' data."""
    for name, seed_size in [("knee3d", "samples"), ("cardiac2d", "samples"), ("selfsr", "full")]:
        gpu, seed = RECIPES[name]["gpu"], RECIPES[name][seed_size]
        assert (gpu.model, gpu.n_feats, gpu.n_blocks, gpu.patch_size) == (seed.model, seed.n_feats, seed.n_blocks,
                                                                         seed.patch_size)
        assert gpu.epochs < seed.epochs
        run = experiment(name, "samples", "cpu", size="gpu")
        assert run.recipe == gpu and str(run).startswith("This run: mode samples, at the gpu size")
