"""The mrisr command as a user runs it: output, exit codes, one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from mrisr.evaluation.render import MAX_GIF_BYTES

BIN = Path(sys.executable).parent / "mrisr"


def run(*args, cwd=None):
    """The console script in a new process, as a user's shell runs it."""
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)


def run_here(*args, cwd=None):
    """`mrisr.cli.main` in this process (what the console script calls), without an interpreter start per call."""
    from mrisr.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(here)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_info_json_on_real_dess(dess_dir):
    result = run("info", dess_dir, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "dicom" and info["shape"] == [80, 512, 512]
    np.testing.assert_allclose(info["spacing_mm"], [1.5, 0.3125, 0.3125], atol=1e-4)
    assert len(info["affine"]) == 4 and info["intensity_range"][1] > info["intensity_range"][0]


def test_info_text_on_cine_slice(sample_data):
    result = run("info", sample_data / "cardiac_acdc_cine_slice" / "demo_data.mat", "--axes", "RCT")
    assert result.returncode == 0, result.stderr
    assert "(30, 1, 184, 256)" in result.stdout and "time" in result.stdout


def test_bad_input_exits_1_with_one_line(tmp_path):
    result = run("info", tmp_path / "missing.nii.gz")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "missing.nii.gz" in result.stderr


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`mrisr demo --fast` run once in an empty folder: phantoms, training, table, animation."""
    folder = tmp_path_factory.mktemp("demo")
    result = run("demo", "--fast", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, result.stdout


def test_demo_writes_checkpoint_tables_and_animation(demo_run):
    folder, stdout = demo_run
    table = pd.read_csv(folder / "runs/demo/table.csv")
    assert set(table["method"]) == {"degraded input", "EDSR3D"} and set(table["region"]) == {"foreground", "whole"}
    assert (folder / "runs/demo/best.pth").is_file() and (folder / "runs/demo/table.md").is_file()
    gif = folder / "volume_animations/demo.gif"
    frames = iio.imread(gif, index=None)
    # The slices with anatomy (most of the 48), thinned to every k-th where the GIF would pass 6 MB.
    assert gif.stat().st_size <= MAX_GIF_BYTES and 48 // 3 <= frames.shape[0] <= 48
    assert "the best baseline (degraded input)" in stdout  # the honest verdict, whichever way it goes


def test_evaluate_and_animate_the_demo_model(demo_run, tmp_path):
    folder, _ = demo_run
    result = run_here("evaluate", "--checkpoint", "runs/demo/best.pth", "--labels", "tiny", "--out",
                      tmp_path / "eval", "--device", "cpu", cwd=folder)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "eval.csv")
    assert list(table["subject"].unique()) == ["phantom_48x64x64_snr30_02"] and "tiny" in set(table["method"])
    phantom = folder / "data/phantoms/phantom_48x64x64_snr30_02.nii.gz"
    result = run_here("animate", tmp_path / "a.gif", phantom, phantom, "--labels", "A", "B", "--step", "4",
                      "--axis", "0", "--all-slices", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert iio.imread(tmp_path / "a.gif", index=None).shape[0] == 12


def test_train_from_a_config_file(demo_run, tmp_path):
    folder, _ = demo_run
    config = json.loads((folder / "runs/demo/config.json").read_text())
    config.update(run_dir=str(tmp_path / "run"), epochs=1)
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run_here("train", tmp_path / "config.json", "--device", "cpu", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run/best.pth").is_file() and "best model" in result.stdout


def test_predict_writes_nifti_with_the_scaled_affine_on_real_dess(dess_block, tmp_path):
    from mrisr import Volume, load_volume, save_volume
    from mrisr.networks.models import EDSR3D
    from mrisr.training.checkpoint import save_checkpoint
    from mrisr.training.config import ExperimentConfig

    knee = save_volume(Volume(dess_block.data[:8, :40, :48], dess_block.affine, dess_block.meta),
                       tmp_path / "knee.nii.gz")
    config = ExperimentConfig(name="x2", n_feats=4, n_blocks=1, scale=2, upsampler="nearest")
    save_checkpoint(EDSR3D(n_feats=4, n_blocks=1, scale=2, upsampler="nearest"), config, tmp_path / "x2.pth")
    result = run_here("predict", knee, tmp_path / "sr.nii.gz", "--checkpoint", tmp_path / "x2.pth", "--device",
                      "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    source, out = load_volume(knee), load_volume(tmp_path / "sr.nii.gz")
    assert out.shape == (16, 80, 96)
    np.testing.assert_allclose(out.spacing, np.divide(source.spacing, 2), rtol=1e-5)
    # Output voxel 0 lies a quarter of an input voxel before input voxel 0 along every axis.
    np.testing.assert_allclose(out.affine[:3, 3], (source.affine @ [-0.25, -0.25, -0.25, 1])[:3], atol=1e-4)
    # An untrained network upsamples trilinearly: the mean intensity is kept.
    assert out.data.mean() == pytest.approx(source.data.mean(), rel=0.02)


def test_predict_with_consistency_agrees_with_the_measured_scan(dess_block, tmp_path):
    from mrisr import Volume, load_volume, save_volume
    from mrisr.networks.models import EDSR3D
    from mrisr.physics.consistency import consistency_error
    from mrisr.physics.degrade import preset
    from mrisr.training.checkpoint import save_checkpoint
    from mrisr.training.config import ExperimentConfig

    spec = preset("knee_fast_acquisition_noise_free")
    lr = spec(Volume(dess_block.data[:12, :48, :48], dess_block.affine, dess_block.meta))
    scan = save_volume(lr, tmp_path / "lr.nii.gz")
    save_checkpoint(EDSR3D(n_feats=4, n_blocks=1), ExperimentConfig(n_feats=4, n_blocks=1), tmp_path / "id.pth")
    (tmp_path / "spec.json").write_text(spec.to_json())  # a spec file (load_degradation also takes preset names)
    result = run_here("predict", scan, tmp_path / "sr.nii.gz", "--checkpoint", tmp_path / "id.pth", "--device",
                      "cpu", "--quiet", "--consistency", tmp_path / "spec.json")
    assert result.returncode == 0, result.stderr
    out, measured = load_volume(tmp_path / "sr.nii.gz"), load_volume(scan)
    # The untrained network returns its input, which the truncation does not reproduce; DC makes it agree.
    assert consistency_error(measured, measured, spec) > 0.01
    assert consistency_error(out, measured, spec) < 1e-3
    (tmp_path / "broken.json").write_text('{"steps": [{"step": "Sharpen"}]}')
    result = run_here("predict", scan, tmp_path / "x.nii.gz", "--checkpoint", tmp_path / "id.pth",
                      "--consistency", tmp_path / "broken.json")
    assert result.returncode == 1 and "broken.json" in result.stderr and result.stderr.count("\n") == 1


def test_animate_two_scans_of_one_name_keeps_both_panels(tmp_path, capsys):
    """``mrisr animate out.gif a/x.nii.gz b/x.nii.gz``: two panels, labelled by their folders; one scan given twice
    with no labels is refused (it would be one panel under one label)."""
    from mrisr import Volume, save_volume
    from mrisr.cli import main, panel_labels

    rng = np.random.default_rng(0)
    for folder in ("a", "b"):
        save_volume(Volume.from_spacing(rng.random((6, 16, 16), dtype=np.float32)), tmp_path / folder / "x.nii.gz")
    a, b = tmp_path / "a/x.nii.gz", tmp_path / "b/x.nii.gz"
    assert panel_labels([str(a), str(b)]) == ["a/x", "b/x"]
    assert main(["animate", str(tmp_path / "out.gif"), str(a), str(b), "--all-slices"]) == 0
    assert "out.gif: 2 panels" in capsys.readouterr().out
    assert main(["animate", str(tmp_path / "same.gif"), str(a), str(a), "--all-slices"]) != 0
    assert "give distinct --labels" in capsys.readouterr().err and not (tmp_path / "same.gif").exists()
