"""Resumable training: a run killed at any point (SIGKILL, in its own interpreter) and resumed with ``--resume``
reaches the weights of an uninterrupted run, bit for bit, on the CPU."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import torch

from mrisr.cli import main

CONFIG = {"name": "resume", "train_paths": ["knee.nii.gz"], "n_feats": 4, "n_blocks": 1, "patch_size": 16,
          "patches_per_epoch": 16, "valid_patches_per_subject": 4, "batch_size": 4, "epochs": 3,
          "holdout_slab": 0.3, "holdout_margin_mm": 3.0, "holdout_axis": 1, "lr_max": 1e-3,
          "degradation": "knee_fast_acquisition_blur_noise_free", "run_dir": "killed"}


def _train_and_kill(args: list[str], cwd, kill_when, timeout_s: float = 240) -> bool:
    """``mrisr train ARGS`` in a new interpreter, SIGKILLed as soon as ``kill_when()`` holds; whether it was still
    running then (rather than finished or failed)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MPLCONFIGDIR": str(cwd / ".mpl")}
    process = subprocess.Popen([sys.executable, "-m", "mrisr.cli", "train", *args], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and not kill_when() and time.monotonic() < deadline:
        time.sleep(0.01)
    running = process.poll() is None
    process.kill()
    _, stderr = process.communicate()
    assert running or process.returncode == 0, stderr
    return running


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, dess_block, monkeypatch):
    from mrisr.io import save_volume

    monkeypatch.chdir(tmp_path)
    save_volume(dess_block, tmp_path / "knee.nii.gz")
    (tmp_path / "run.json").write_text(json.dumps(CONFIG))
    killed, last = tmp_path / "killed", tmp_path / "killed" / "last.pth"

    # killed before its first epoch ends: --resume then starts from the beginning
    assert _train_and_kill(["run.json"], tmp_path, lambda: (killed / "config.json").exists())
    # killed in the second epoch, as soon as the first one is saved
    assert _train_and_kill(["run.json", "--resume"], tmp_path, last.exists)
    assert torch.load(last, weights_only=True)["training"]["epochs_done"] < CONFIG["epochs"]
    assert main(["train", "run.json", "--resume"]) == 0
    assert main(["train", "run.json", "--set", "run_dir=whole"]) == 0

    for name in ("last.pth", "best.pth"):
        resumed, whole = (torch.load(tmp_path / run / name, weights_only=True) for run in ("killed", "whole"))
        assert resumed["info"] == whole["info"]
        assert resumed["model"].keys() == whole["model"].keys()
        assert all(torch.equal(resumed["model"][k], whole["model"][k]) for k in whole["model"]), name
    assert torch.load(last, weights_only=True)["training"]["epochs_done"] == CONFIG["epochs"]
    assert not list(killed.glob(".*partial*"))  # what the kills left half-written was removed by the next write

    finished = {p.name: _digest(p) for p in killed.glob("*.pth")}
    assert main(["train", "run.json", "--resume"]) == 0  # nothing left to train: nothing changes
    assert {p.name: _digest(p) for p in killed.glob("*.pth")} == finished
