"""Every notebook runs top to bottom in smoke mode on the real samples, and leaves its outputs, tables and animations;
the title cell is stamped with what it ran on. (01 runs in full mode instead, in tests/test_full_mode.py, with 02 and
03 after it.)"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import REPO
from mrisr.notebook import run_notebooks, show_animation, stamp

NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sample_data):
    """An empty folder where the notebooks run in order (03 reads what 02 trained)."""
    return tmp_path_factory.mktemp("notebooks")


def execute(name: str, folder, **parameters):
    import papermill

    vgg = {"vgg_weights": str(REPO.parent / "shared/data/vgg16/vgg16_features_block1-3.pth"),
           "vgg_normalization": "caffe"}
    parameters = {"mode": "smoke", "device": "cpu", "work_dir": str(folder / "data"), **parameters}
    for key, value in vgg.items():  # the offline VGG16 weights wherever a notebook takes them
        if f"{key} = " in (NOTEBOOKS / f"{name}.ipynb").read_text():
            parameters.setdefault(key, value)
    nb = papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(folder / f"{name}.ipynb"),
                                    parameters=parameters, cwd=str(folder), kernel_name="python3", progress_bar=False)
    dependency_warnings = [line for line in outputs(nb).splitlines() if "site-packages" in line and "Warning" in line]
    assert not dependency_warnings, dependency_warnings  # project_dir hides them, as the CLI does
    return nb


def outputs(notebook) -> str:
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     + str(o.get("data", {}).get("text/html", ""))
                     + str(o.get("data", {}).get("text/markdown", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))


def test_00_quickstart(workspace):
    nb = execute("00_quickstart", workspace, run_dir=str(workspace / "runs/quickstart"),
                 gif=str(workspace / "quick.gif"))
    assert (workspace / "quick.gif").is_file() and (workspace / "runs/quickstart/table.md").is_file()
    text = outputs(nb)
    assert "the best baseline (degraded input)" in text
    assert "This run: mode smoke; device CPU; data: built-in phantom knees" in text and "finished in" in text
    line = stamp(workspace / "00_quickstart.ipynb")  # what the Makefile does after each run
    title = "".join(nbformat.read(workspace / "00_quickstart.ipynb", as_version=4).cells[0].source)
    assert line.startswith("> **This run:** mode smoke; device CPU") and "; took " in line and line in title
    assert stamp(workspace / "00_quickstart.ipynb") == line  # a second stamp replaces the first
    title_again = "".join(nbformat.read(workspace / "00_quickstart.ipynb", as_version=4).cells[0].source)
    assert title_again.count("**This run:**") == 1


def test_02_trains_both_knee_models(workspace):
    runs = {"MSE": str(workspace / "runs/knee_mse"), "MSE+perceptual": str(workspace / "runs/knee_perceptual")}
    nb = execute("02_knee3d_train", workspace, runs=runs)
    assert all((Path(run) / "best.pth").is_file() for run in runs.values())
    text = outputs(nb)
    assert "validate ['knee_slab_4']\ntest ['knee_slab_3']" in text and "gain_db" in text  # one split
    assert ("**This run's split** (mode smoke, by subject or by a disjoint slab): trains on 2 (`knee_slab_1`, "
            "`knee_slab_2`), validates on 1 (`knee_slab_4`) and tests on 1 (`knee_slab_3`)") in text
    assert "perceptual_loss" in text  # the perceptual experiment logs the VGG term as a metric


@pytest.mark.timeout(900)  # every classical baseline fitted and scored on two cases, besides the networks
def test_03_compare(workspace):
    runs = {"MSE": str(workspace / "runs/knee_mse"), "MSE+perceptual": str(workspace / "runs/knee_perceptual")}
    nb = execute("03_knee3d_compare", workspace, runs=runs, results_dir=str(workspace / "compare"),
                 animations_dir=str(workspace / "animations"), gif_step=8)
    methods = {"degraded input", "MSE", "MSE+perceptual"}  # each also made data-consistent; and TV-POCS
    for stem, subject in (("knee_test", "knee_slab_3"), ("knee_fair_test", "FAIR knee")):  # the FAIR knee too
        table = pd.read_csv(workspace / f"compare/{stem}.csv")
        assert set(table["method"]) == methods | {f"{m}+DC" for m in methods} | {"TV-POCS"}
        assert set(table["subject"]) == {subject}
    gains = (workspace / "compare/knee_gains.md").read_text()
    assert "knee_slab_3" in gains and "ci_low" in gains and "MSE+perceptual" in gains and "verdict" in gains
    gifs = sorted(p.name for p in (workspace / "animations").iterdir())
    assert gifs == ["knee_knee_slab_3.gif"]
    text = outputs(nb)
    assert "best classical baseline on validation:" in text
    assert "MSE+perceptual against MSE: PSNR " in text and "HFEN " in text  # the verdicts come from the library


@pytest.mark.timeout(900)
def test_04_cardiac_four_models(workspace):
    nb = execute("04_cardiac2d_four_models", workspace, run_root=str(workspace / "runs/cardiac"),
                 animations_dir=str(workspace / "animations05"))
    table = pd.read_csv(workspace / "runs/cardiac/cardiac_test.csv")
    expected = {f"{loss}, {up}" for loss in ("MSE", "perceptual") for up in ("transposed conv", "NN resize + conv")}
    classical = {"nearest", "linear", "cubic", "cubic+DC", "TV-POCS", "Wiener"}
    seeded = {f"{m} (seed 0)" for m in expected}  # smoke: one seed
    assert seeded | {f"{m}+DC" for m in seeded} | classical == set(table["method"])
    assert set(table["subject"]) == {"mnms2_sax"}  # split by subject: ACDC trains, M&Ms validates, M&Ms-2 tests
    text = outputs(nb)
    assert "validate on ['mnms_sax'], test on ['mnms2_sax']" in text and "least periodic artefact" in text
    assert "best classical baseline on validation:" in text and "mnms2_sax: MSE, NN resize + conv against " in text
    assert sorted(p.name for p in (workspace / "animations05").iterdir()) == ["cardiac_mnms2_sax.gif"]


def test_05_selfsupervised_knee(workspace):
    nb = execute("05_selfsupervised_knee", workspace, animations_dir=str(workspace / "animations06"), gif_step=4,
                 results_dir=str(workspace / "selfsr"))
    table = (workspace / "selfsr/selfsr_dess.md").read_text()
    assert all(method in table for method in ("self-supervised + DC", "TV-POCS", "cubic+DC"))  # every baseline
    text = outputs(nb)
    for factor, thickness in ((3, 4.5), (4, 6.0)):  # one verdict line per thickness and method, from the library
        for method in ("self-supervised", "self-supervised + DC"):
            assert re.search(rf"x{factor} \({thickness} mm\): {re.escape(method)} is "
                             r"(better|not distinguishable|worse) against the best classical baseline", text), text
    gifs = sorted(p.name for p in (workspace / "animations06").iterdir())
    assert gifs == ["selfsr_dess_isotropic.gif", "selfsr_dess_x4.gif"]


def test_run_notebooks_executes_in_place_in_a_mode_and_stamps(tmp_path, sample_data):
    """What `make notebooks-samples` runs, on a probe notebook: the mode and the samples' VGG16 weights injected,
    the notebook rewritten in place with its outputs, its title stamped."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# A probe\n\nIts story."),
                nbformat.v4.new_code_cell('mode = "full"\nvgg_weights = None', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('print(f"This run: mode {mode}; weights {vgg_weights}")')]
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks/probe.ipynb")
    stamps = run_notebooks("samples", ["probe"], root=tmp_path)
    assert stamps[0].startswith("> **This run:** mode samples; weights ") and stamps[0].endswith(" min.")
    assert "vgg16/vgg16_features_block1-3.pth" in stamps[0]
    title = nbformat.read(tmp_path / "notebooks/probe.ipynb", as_version=4).cells[0].source
    assert title == f"# A probe\n\n{stamps[0]}\n\nIts story."
    with pytest.raises(FileNotFoundError, match="missing.ipynb"):
        run_notebooks("smoke", ["missing"], root=tmp_path)


def test_show_animation_links_what_git_keeps_and_embeds_a_frame_of_what_it_does_not(tmp_path):
    import subprocess

    import imageio.v3 as iio
    import numpy as np
    from IPython.display import Image, Markdown

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/volume_animations/ignored.gif\n")
    (tmp_path / "volume_animations").mkdir()
    frames = np.stack([np.full((8, 10, 3), 40 * i, np.uint8) for i in range(5)])  # frame i is grey level 40 i
    for name in ("kept.gif", "ignored.gif"):
        iio.imwrite(tmp_path / "volume_animations" / name, frames, extension=".gif")
    kept = show_animation(tmp_path / "volume_animations/kept.gif", root=tmp_path)
    assert isinstance(kept, Markdown) and kept.data == "![kept.gif](../volume_animations/kept.gif)"
    still = show_animation(tmp_path / "volume_animations/ignored.gif", root=tmp_path)
    assert isinstance(still, Image)
    middle = iio.imread(still.data, extension=".png")
    assert middle.shape[:2] == (8, 10) and abs(int(middle[..., 0].mean()) - 80) <= 2  # frame 2 of 5
    with pytest.raises(FileNotFoundError, match="missing.gif"):
        show_animation(tmp_path / "missing.gif", root=tmp_path)


def test_the_committed_notebooks_link_only_to_files_a_clone_has():
    """Every image a committed notebook's outputs link to (Markdown ``![..](path)``, relative to notebooks/) is in
    the repository and not ignored by git: a fresh clone shows it (`show_animation` embeds a frame of the others)."""
    import subprocess

    links = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
                text = str(output.get("data", {}).get("text/markdown", ""))
                for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
                    links.setdefault(target, []).append(path.name)
    assert links, "no linked images at all: the check would pass vacuously"
    for target, notebooks in links.items():
        file = (NOTEBOOKS / target).resolve()
        assert file.is_file(), f"{notebooks} link to {target}, which does not exist"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(file)], cwd=REPO).returncode == 0
        assert not ignored, f"{notebooks} link to {target}, which git ignores: a fresh clone lacks it"


def test_the_committed_notebooks_show_no_dependency_warning():
    """What a reader of a fresh clone sees: no deprecation notice from torch, fastai or pandas in any output
    (`mrisr.notebook.project_dir` hides them, as the CLI does). Our own warnings still show."""
    found = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        lines = [line for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
                 for line in str(output.get("text", "")).splitlines() if "site-packages" in line]
        if lines:
            found[path.name] = lines[:2]
    assert not found, found
