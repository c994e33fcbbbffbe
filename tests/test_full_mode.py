"""Full mode rehearsed end to end, as a user with internet runs it: notebooks 01, 02 and 03 in order through
``python -m mrisr.notebook run full``, against a local mridata mirror (`mrisr.testing.mridata_mirror`: real DESS images
in the Stanford knees' raw ISMRMRD format) served on 127.0.0.1, at the smoke size (``--set size=smoke``: sizes only, the
full mode's code path and data)."""

from __future__ import annotations

import json
import shutil

import nbformat
import pandas as pd
import pytest

from conftest import REPO
from mrisr.io.download import knee_cases
from mrisr.notebook import main
from mrisr.testing import FileServer, mridata_mirror
from mrisr.training.config import ExperimentConfig

CASES = 4  # a quarter of them test, one validates, two train: the split of the 20, at its smallest
NOTEBOOKS = ("01_knee_data", "02_knee3d_train", "03_knee3d_compare")


@pytest.mark.timeout(900)
def test_full_mode_downloads_converts_trains_and_compares_against_a_local_mirror(tmp_path, sample_data, monkeypatch):
    mirror = mridata_mirror(tmp_path / "mirror", cases=CASES, shape=(40, 48, 48))
    server = FileServer()
    try:
        monkeypatch.setenv("MRISR_MRIDATA_URL", server.serve_folder(tmp_path / "mirror"))  # read by the kernels
        first = f"/download/{mirror[0].stem}"
        server.drop_after[first] = mirror[0].stat().st_size // 3  # the first transfer breaks off once
        project = tmp_path / "project"
        (project / "notebooks").mkdir(parents=True)
        for name in NOTEBOOKS:
            shutil.copy(REPO / "notebooks" / f"{name}.ipynb", project / "notebooks")
        vgg = sample_data / "vgg16" / "vgg16_features_block1-3.pth"  # no internet here for torchvision's weights
        assert main(["run", "full", *NOTEBOOKS, "--root", str(project), "--set", "size=smoke",
                     "--set", "download=true", "--set", f"cases=1-{CASES}", "--set", "device=cpu",
                     "--set", f"vgg_weights={vgg}", "--set", "vgg_normalization=caffe", "--set", "gif_step=4"]) == 0
    finally:
        server.close()
    resumed = [r for r, path in zip(server.ranges, server.requested) if path == first and r]
    assert resumed and resumed[0].startswith("bytes="), server.ranges  # the broken transfer resumed, not restarted

    knees = project / "data" / "knees"
    names = [f"knee_{c.case:02d}" for c in knee_cases()[:CASES]]
    assert sorted(p.name for p in knees.glob("*.nii.gz")) == [f"{n}.nii.gz" for n in names]
    text = {name: outputs(project / "notebooks" / f"{name}.ipynb") for name in NOTEBOOKS}
    assert f"{CASES} knee volumes" in text["01_knee_data"] and "This run: mode full, at the smoke size" in text[
        "01_knee_data"]
    assert "knee_fast_acquisition_blur" in text["01_knee_data"] and "cubic" in text["01_knee_data"]  # presets, table
    config = json.loads((project / "runs" / "knee_mse" / "config.json").read_text())
    split = ExperimentConfig.from_dict(config).split
    test, valid = split.names[2], split.names[1]
    assert test == names[-1:] and valid == names[-2:-1]  # a split by patient: the last quarter tests, one validates
    assert f"validates on 1 (`{valid[0]}`) and tests on 1 (`{test[0]}`)" in text["02_knee3d_train"]
    for run in ("knee_mse", "knee_perceptual"):
        assert (project / "runs" / run / "best.pth").is_file()
    table = pd.read_csv(project / "runs" / "knee_compare" / "knee_test.csv")
    assert set(table["subject"]) == set(test) and {"MSE", "MSE+perceptual"} <= set(table["method"])
    gifs = sorted(p.name for p in (project / "volume_animations").glob("*.gif"))
    assert gifs == [f"knee_{n}.gif" for n in test]
    for name in NOTEBOOKS:  # each stamped with what it ran on
        title = nbformat.read(project / "notebooks" / f"{name}.ipynb", as_version=4).cells[0].source
        assert "> **This run:** mode full, at the smoke size" in title


def outputs(path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     + str(o.get("data", {}).get("text/markdown", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
