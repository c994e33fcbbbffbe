"""The mrisr command as a user runs it: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent / "mrisr"


def run(*args, cwd=None):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)


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


def test_usage_error_exits_2():
    assert run("info").returncode == 2
    assert run("download", "knees", "--cases", "0-99", "--dest", "/nonexistent").returncode == 1


def test_demo_runs_the_phantom_through_the_loaders(tmp_path):
    result = run("demo", "--subjects", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("round trip exact: True") == 2
