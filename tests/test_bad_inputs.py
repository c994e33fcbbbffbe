"""Bad inputs and faults, as a new user meets them, across the commands: one table, one check per row.

For every row: the exit code; one line on stderr naming the file (or the option) and the problem; no traceback; no
output left behind; every file that was there before is byte-identical afterwards. Commands run in this process
(`mrisr.cli.main`), the way the console script runs them, without an interpreter start-up per row.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from mrisr.cli import main

CONFIGS = {  # config file name -> what it holds wrong
    "epochs_text.json": {"epochs": "ten"},
    "lr_text.json": {"lr_max": "fast"},
    "negative_features.json": {"n_feats": -3},
    "zero_batch.json": {"batch_size": 0},
    "zero_patches.json": {"patches_per_subject": 0},
    "patch_shape.json": {"patch_size": [32, 32, 32, 32]},
    "unknown_key.json": {"colour": "red"},
}


@pytest.fixture
def workspace(tmp_path, dess_block, dess_dir, monkeypatch):
    """A folder with what the rows use: a real DESS block as NIfTI, a tiny checkpoint, one whose config does not fit
    its weights, bad configs, and a DICOM series (10 real slices) whose last file is truncated."""
    from mrisr.io import save_volume
    from mrisr.models import EDSR3D
    from mrisr.train import ExperimentConfig, save_checkpoint

    monkeypatch.chdir(tmp_path)
    save_volume(dess_block, tmp_path / "scan.nii.gz")
    config = ExperimentConfig(n_feats=4, n_blocks=1)
    save_checkpoint(EDSR3D(n_feats=4, n_blocks=1), config, tmp_path / "ck.pth")
    save_checkpoint(EDSR3D(n_feats=4, n_blocks=1), ExperimentConfig(n_feats=8, n_blocks=1), tmp_path / "mismatch.pth")
    for name, values in CONFIGS.items():
        (tmp_path / name).write_text(json.dumps(values))
    (tmp_path / "trained").mkdir()  # an earlier run's folder, and a config that would train into it again
    shutil.copy(tmp_path / "ck.pth", tmp_path / "trained" / "best.pth")
    (tmp_path / "retrain.json").write_text(json.dumps({"epochs": 1, "run_dir": "trained"}))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "config.json").write_text(json.dumps({"epochs": 1, "run_dir": "runs"}))
    series = tmp_path / "series"
    series.mkdir()
    for path in sorted(dess_dir.glob("*.dcm"))[-10:]:  # the last 10 slices by position
        shutil.copy(path, series / path.name)
    last = sorted(series.iterdir())[-1]
    last.write_bytes(last.read_bytes()[:300])  # a copy killed mid-way: the preamble and magic, then nothing
    return tmp_path


ROWS = [  # (command line, exit code, what the message must name)
    ("predict scan.nii.gz scan.nii.gz --checkpoint ck.pth", 2, "scan.nii.gz"),
    ("predict scan.nii.gz ck.nii.gz --checkpoint scan.nii.gz", 1, "scan.nii.gz"),  # a scan is no checkpoint
    ("predict scan.nii.gz out.nii.gz --checkpoint ck.pth --batch-size -1", 1, "batch_size"),
    ("predict scan.nii.gz out.nii.gz --checkpoint ck.pth --patch-size 0", 1, "patch_size"),
    ("predict scan.nii.gz out.nii.gz --checkpoint ck.pth --overlap 1.5", 1, "overlap"),
    ("predict scan.nii.gz scan.nii.gz/out.nii.gz --checkpoint ck.pth", 1, "scan.nii.gz/out.nii.gz"),
    ("predict scan.nii.gz out.nii.gz --checkpoint mismatch.pth", 1, "mismatch.pth"),
    ("selfsr scan.nii.gz scan.nii.gz", 2, "scan.nii.gz"),
    ("selfsr scan.nii.gz scan.nii.gz/sr.nii.gz", 1, "scan.nii.gz/sr.nii.gz"),
    ("baselines scan.nii.gz --preset cardiac_x4 --csv scan.nii.gz", 2, "scan.nii.gz"),
    ("baselines scan.nii.gz --preset cardiac_x4 --csv scan.nii.gz/table.csv", 1, "scan.nii.gz/table.csv"),
    ("animate scan.nii.gz/a.gif scan.nii.gz", 1, "scan.nii.gz/a.gif"),
    ("evaluate scan.nii.gz --checkpoint ck.pth --out scan.nii.gz/table", 1, "scan.nii.gz/table"),
    ("evaluate scan.nii.gz --checkpoint mismatch.pth", 1, "mismatch.pth"),
    ("bench --preset tiny --volume scan.nii.gz --json scan.nii.gz", 2, "scan.nii.gz"),
    ("train runs/config.json", 2, "config.json"),  # its run folder would get a new config.json over it
    ("train retrain.json", 2, "trained/best.pth"),  # an earlier run's model is not replaced without --overwrite
    ("info series", 1, "IM-0001-0159-0001.dcm"),
    *[(f"train {name}", 1, name) for name in CONFIGS],
]


def _snapshot(folder) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command, code, named", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_row(command, code, named, workspace, capsys):
    before = _snapshot(workspace)
    assert main(command.split()) == code
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and named in stderr, stderr
    assert "Traceback" not in stderr
    assert _snapshot(workspace) == before  # nothing written, nothing changed


def test_skip_unreadable_loads_the_rest_with_a_warning(workspace):
    from mrisr.io import load_volume

    with pytest.warns(RuntimeWarning, match="IM-0001-0159-0001.dcm.*skipped"):
        volume = load_volume(workspace / "series", skip_unreadable=True)
    assert volume.shape == (9, 512, 512)


def test_debug_shows_the_traceback(workspace):
    with pytest.raises(ValueError, match="epochs must be an integer"):
        main(["--debug", "train", "epochs_text.json"])


def test_a_leftover_partial_file_is_removed_by_the_next_write(workspace):
    from mrisr.io import load_volume, save_volume

    leftover = workspace / ".copy.nii.gz.999999999.partial.nii.gz"  # a write killed before its rename
    leftover.write_bytes(b"half a file")
    save_volume(load_volume(workspace / "scan.nii.gz"), workspace / "copy.nii.gz")
    assert not leftover.exists() and (workspace / "copy.nii.gz").is_file()
