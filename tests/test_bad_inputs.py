"""Bad inputs and faults, as a new user meets them, across the commands: one table, one check per row.

For every row: the exit code; one line on stderr naming the file (or the option) and the problem; no traceback; no
output left behind; every file that was there before is byte-identical afterwards. Commands run in this process
(`mrisr.cli.main`), the way the console script runs them, without an interpreter start-up per row.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from mrisr import Volume
from mrisr.cli import main
from mrisr.data.cases import disjoint_slabs, split_slabs
from mrisr.evaluation.render import animate
from mrisr.inference.selfsr import super_resolve
from mrisr.inference.tiled import predict_volume
from mrisr.networks.models import EDSR3D
from mrisr.physics.degrade import Downsample, GaussianBlur, KSpaceTruncation, RicianNoise
from mrisr.training.config import ExperimentConfig

CONFIGS = {  # config file name -> what it holds wrong
    "epochs_text.json": {"epochs": "ten"},
    "lr_text.json": {"lr_max": "fast"},
    "negative_features.json": {"n_feats": -3},
    "zero_batch.json": {"batch_size": 0},
    "zero_patches.json": {"patches_per_epoch": 0},
    "patch_shape.json": {"patch_size": [32, 32, 32, 32]},
    "unknown_key.json": {"colour": "red"},
}


@pytest.fixture
def workspace(tmp_path, dess_block, dess_dir, monkeypatch):
    """A folder with what the rows use: a real DESS block as NIfTI, a tiny checkpoint, one whose config does not fit
    its weights, bad configs, and two DICOM series (10 real slices) whose last file is truncated: in its header
    (``series``), in its pixel data (``pixels``)."""
    from mrisr.io import save_volume
    from mrisr.training.checkpoint import save_checkpoint

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
    (tmp_path / "resumable").mkdir()  # a run with a last.pth, and a config with other settings that would resume it
    for name in ("best.pth", "last.pth"):
        save_checkpoint(EDSR3D(n_feats=4, n_blocks=1), ExperimentConfig(n_feats=4, n_blocks=1, epochs=1,
                                                                        run_dir="resumable"),
                        tmp_path / "resumable" / name, training={"epochs_done": 1})
    (tmp_path / "resume_other.json").write_text(json.dumps({"n_feats": 4, "n_blocks": 1, "epochs": 2,
                                                            "run_dir": "resumable"}))
    (tmp_path / "x.pth").write_text("not a checkpoint")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "config.json").write_text(json.dumps({"epochs": 1, "run_dir": "runs"}))
    series = tmp_path / "series"
    series.mkdir()
    for path in sorted(dess_dir.glob("*.dcm"))[-10:]:  # the last 10 slices by position
        shutil.copy(path, series / path.name)
    last = sorted(series.iterdir())[-1]
    shutil.copytree(series, tmp_path / "pixels")
    last.write_bytes(last.read_bytes()[:300])  # a copy killed mid-way: the preamble and magic, then nothing
    last = tmp_path / "pixels" / last.name
    last.write_bytes(last.read_bytes()[:-5000])  # the whole header, then pixel data cut short
    return tmp_path


ROWS = [  # (command line, exit code, what the message must name)
    ("predict scan.nii.gz scan.nii.gz --checkpoint ck.pth", 2, "scan.nii.gz"),
    ("predict scan.nii.gz ck.nii.gz --checkpoint scan.nii.gz", 1, "scan.nii.gz"),  # a scan is no checkpoint
    ("predict scan.nii.gz out.nii.gz --checkpoint ck.pth --batch-size -1", 1, "batch_size"),
    ("predict scan.nii.gz out.nii.gz --checkpoint ck.pth --tile-size 0", 1, "tile_size"),
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
    ("train runs/config.json", 2, "config.json"),  # its run folder would get a new config.json over it
    ("train retrain.json", 2, "trained/best.pth"),  # an earlier run's model is not replaced without --overwrite
    ("train retrain.json --resume", 2, "trained/last.pth"),  # best.pth without a last.pth: nothing to resume from
    ("train resume_other.json --resume", 1, "resumable/last.pth"),  # its last.pth was written with other settings
    ("train retrain.json --set epochs=0", 2, "retrain.json"),
    ("train retrain.json --set epoch=3", 2, "unknown config keys"),
    ("predict scan.nii.gz out.nii.gz --checkpoint missing.pth", 1, "missing.pth"),
    ("download knees --cases 0-3 --dest dl", 1, "cases"),
    ("download knees --cases 1 --dest dl --url http://127.0.0.1:9/knee.h5", 1, "{uuid}"),
    ("download knees --cases 1 --dest dl --url http://127.0.0.1:9/{uuid}", 1, "http://127.0.0.1:9/"),  # refused
    ("demo --fast --data scan.nii.gz --gif scan.nii.gz", 2, "scan.nii.gz"),
    ("demo --fast --run-dir scan.nii.gz", 1, "scan.nii.gz/config.json"),
    ("info series", 1, "IM-0001-0159-0001.dcm"),
    ("info pixels", 1, "IM-0001-0159-0001.dcm"),
    ("info missing.nii.gz", 1, "missing.nii.gz"),
    ("train missing.json", 1, "missing.json"),
    ("predict missing.nii.gz out.nii.gz --checkpoint x.pth", 1, "x.pth"),  # a text file is no checkpoint
    ("predict scan.nii.gz out.png --checkpoint ck.pth", 1, "out.png"),
    ("evaluate --checkpoint nothing.pth", 1, "nothing.pth"),
    ("animate out.gif missing_a.nii.gz", 1, "missing_a.nii.gz"),
    ("animate out.avi scan.nii.gz", 1, "out.avi"),
    ("demo --data missing_scan.nii.gz", 1, "missing_scan.nii.gz"),
    *[(f"train {name}", 1, name) for name in CONFIGS],
]


API_ROWS = [  # (call, the argument the message must name): each public entry point checks its numbers
    ("predict_volume(model, scan, batch_size=-1)", lambda scan, model: predict_volume(model, scan, batch_size=-1),
     "batch_size"),
    ("predict_volume(model, scan, tile_size=[8, 8])",
     lambda scan, model: predict_volume(model, scan, tile_size=[8, 8]), "tile_size"),
    ("predict_volume(model, scan, overlap=1.0)", lambda scan, model: predict_volume(model, scan, overlap=1.0),
     "overlap"),
    ("predict_volume(model, scan, halo=-1)", lambda scan, model: predict_volume(model, scan, halo=-1), "halo"),
    ("predict_volume(model, scan, memory_gb=0)", lambda scan, model: predict_volume(model, scan, memory_gb=0),
     "memory_gb"),
    ("animate(fps=0)", lambda scan, model: animate({"scan": scan}, "scan.gif", fps=0), "fps"),
    ("animate(step=0)", lambda scan, model: animate({"scan": scan}, "scan.gif", step=0), "step"),
    ("animate(axis=3)", lambda scan, model: animate({"scan": scan}, "scan.gif", axis=3), "axis"),
    ("split_slabs(holdout=1.5)", lambda scan, model: split_slabs(scan, holdout=1.5), "holdout"),
    ("split_slabs(margin_mm=-1)", lambda scan, model: split_slabs(scan, margin_mm=-1), "margin_mm"),
    ("disjoint_slabs(n=0)", lambda scan, model: disjoint_slabs(scan, 0), "n"),
    ("GaussianBlur(sigma=nan)", lambda scan, model: GaussianBlur(sigma=float("nan")), "sigma"),
    ("Downsample(1.5)", lambda scan, model: Downsample(1.5), "factors"),
    ("KSpaceTruncation(0.0)", lambda scan, model: KSpaceTruncation(0.0, axes=(1,)), "fraction"),
    ("RicianNoise(-0.1)", lambda scan, model: RicianNoise(-0.1), "snr"),
    ("Volume(zero spacing)", lambda scan, model: Volume(scan.data, np.diag([0.0, 1, 1, 1])), "affine"),
    ("super_resolve(slice_thickness=0)", lambda scan, model: super_resolve(scan, slice_thickness=0, progress=False),
     "slice thickness"),
    ("ExperimentConfig(deterministic, cudnn_benchmark)",
     lambda scan, model: ExperimentConfig(deterministic=True, cudnn_benchmark=True), "cudnn_benchmark"),
]


@pytest.mark.parametrize("call, named", [r[1:] for r in API_ROWS], ids=[r[0] for r in API_ROWS])
def test_bad_number_row(call, named, dess_block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scan = Volume(dess_block.data[:16, :32, :32], dess_block.affine, dess_block.meta)
    with pytest.raises(ValueError) as raised:
        call(scan, EDSR3D(n_feats=4, n_blocks=1).eval())
    assert named in str(raised.value) and "\n" not in str(raised.value)
    assert not list(tmp_path.iterdir())


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


def test_a_command_line_argparse_rejects_exits_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["info"])  # its path is missing
    assert exited.value.code == 2 and "path" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["train", "run.json", "--set", "epochs"])  # an override without its value
    assert exited.value.code == 2 and "--set: takes KEY=VALUE, got 'epochs'" in capsys.readouterr().err


def test_skip_unreadable_loads_the_rest_with_a_warning(workspace):
    from mrisr.io import load_volume

    for series in ("series", "pixels"):  # a truncated header; pixel data that cannot be decoded
        with pytest.warns(RuntimeWarning, match="IM-0001-0159-0001.dcm.*skipped"):
            volume = load_volume(workspace / series, skip_unreadable=True)
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
