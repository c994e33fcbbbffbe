"""Every notebook runs top to bottom with its smoke parameters on the real samples, and leaves its outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO

NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sample_data):
    """An empty folder where the notebooks run in order (04 reads what 02 trained)."""
    return tmp_path_factory.mktemp("notebooks")


def execute(name: str, folder, **parameters):
    import papermill

    vgg = {"vgg_weights": str(REPO.parent / "shared/data/vgg16/vgg16_features_block1-3.pth"),
           "vgg_normalization": "caffe"}
    parameters = {"smoke": True, "device": "cpu", "work_dir": str(folder / "data"), **parameters}
    for key, value in vgg.items():  # the offline VGG16 weights wherever a notebook takes them
        if f"{key} = " in (NOTEBOOKS / f"{name}.ipynb").read_text():
            parameters.setdefault(key, value)
    return papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(folder / f"{name}.ipynb"),
                                      parameters=parameters, cwd=str(folder), kernel_name="python3",
                                      progress_bar=False)


def outputs(notebook) -> str:
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     + str(o.get("data", {}).get("text/html", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))


def test_00_quickstart(workspace):
    nb = execute("00_quickstart", workspace, run_dir=str(workspace / "runs/quickstart"),
                 gif=str(workspace / "quick.gif"))
    assert (workspace / "quick.gif").is_file() and (workspace / "runs/quickstart/table.md").is_file()
    assert "the best baseline (degraded input)" in outputs(nb)


def test_01_knee_data(workspace):
    nb = execute("01_knee_data", workspace)
    text = outputs(nb)
    assert "4 knee volumes" in text and "knee_fast_acquisition_blur" in text and "cubic" in text


def test_02_trains_both_knee_models(workspace):
    runs = {"MSE": str(workspace / "runs/knee_mse"), "MSE+perceptual": str(workspace / "runs/knee_perceptual")}
    nb = execute("02_knee3d_train", workspace, runs=runs)
    assert all((Path(run) / "best.pth").is_file() for run in runs.values())
    text = outputs(nb)
    assert "validate ['knee_slab_3']\ntest ['knee_slab_4']" in text and "gain_db" in text
    assert "perceptual_loss" in text  # the perceptual experiment logs the VGG term as a metric


def test_04_compare(workspace):
    runs = {"MSE": str(workspace / "runs/knee_mse"), "MSE+perceptual": str(workspace / "runs/knee_perceptual")}
    nb = execute("04_knee3d_compare", workspace, runs=runs, tables=str(workspace / "compare/test"),
                 animations_dir=str(workspace / "animations"), gif_step=8)
    table = pd.read_csv(workspace / "compare/test.csv")
    methods = {"degraded input", "MSE", "MSE+perceptual"}
    assert set(table["method"]) == methods | {f"{m}+DC" for m in methods}  # each also made data-consistent
    assert set(table["subject"]) == {"knee_slab_4"}
    gifs = sorted(p.name for p in (workspace / "animations").iterdir())
    assert gifs == ["knee_knee_slab_4.gif", "knee_knee_slab_4_errors.gif"]
    assert "HFEN (lower is sharper and closer)" in outputs(nb)


def test_05_cardiac_four_models(workspace):
    nb = execute("05_cardiac2d_four_models", workspace, run_root=str(workspace / "runs/cardiac"))
    table = pd.read_csv(workspace / "runs/cardiac/test.csv")
    expected = {f"{loss}, {up}" for loss in ("MSE", "perceptual") for up in ("transposed conv", "NN resize + conv")}
    assert expected | {"nearest", "linear", "cubic"} == set(table["method"])
    assert "least periodic artefact" in outputs(nb)


def test_06_selfsupervised_knee(workspace):
    nb = execute("06_selfsupervised_knee", workspace, animations_dir=str(workspace / "animations06"), gif_step=4)
    text = outputs(nb)
    for thickness in ("4.5 mm (x3)", "6.0 mm (x4)"):
        assert f"{thickness}: self-supervised" in text  # one verdict line per thickness and method
    assert "self-supervised + DC" in text and "cubic" in text
    gifs = sorted(p.name for p in (workspace / "animations06").iterdir())
    assert gifs == ["selfsr_dess_isotropic.gif", "selfsr_dess_x4.gif"]
