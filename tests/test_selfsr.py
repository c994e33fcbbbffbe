"""Self-supervised super-resolution (SMORE, mrisr.inference.selfsr) on a real DESS crop made thick: x3 along the slice
axis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrisr import Volume
from mrisr.data.cases import sub_volume
from mrisr.errors import InputError
from mrisr.evaluation.baselines import resample
from mrisr.evaluation.tables import score_table
from mrisr.inference import selfsr
from mrisr.physics.degrade import Degradation, SliceThickness


TINY = "smoke"  # RECIPES["selfsr"]["smoke"]: 8 features, 1 block, 1 epoch


def _crop(volume: Volume, start, size) -> Volume:
    for axis, (a, n) in enumerate(zip(start, size)):
        volume = sub_volume(volume, axis, a, a + n)
    return volume


@pytest.fixture(scope="module")
def dess_crop(dess) -> Volume:
    """48 x 192 x 192 of the real DESS knee (1.5 x 0.3125 x 0.3125 mm): the reference."""
    return _crop(dess, (16, 150, 150), (48, 192, 192))


@pytest.fixture(scope="module")
def thick(dess_crop) -> Volume:
    """The crop with slices three times thicker: 16 slices 4.5 mm thick, 4.5 mm apart."""
    return Degradation([SliceThickness(3)])(dess_crop)


@pytest.fixture(scope="module")
def cli_run(thick, tmp_path_factory):
    """`mrisr selfsr thick.nii.gz out.nii.gz --target-spacing 1.5 --size fast` on the CPU, once (in this process:
    the command's code without another interpreter's start-up)."""
    import contextlib
    import io

    from mrisr.cli import main
    from mrisr.io import load_volume, save_volume

    folder = tmp_path_factory.mktemp("selfsr")
    scan = save_volume(thick, folder / "thick.nii.gz")
    before = scan.read_bytes()
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["selfsr", str(scan), str(folder / "out.nii.gz"), "--target-spacing", "1.5", "--size", "fast",
                     "--device", "cpu"])
    assert code == 0, stdout.getvalue()
    assert scan.read_bytes() == before  # the input is left alone
    return stdout.getvalue(), load_volume(folder / "out.nii.gz")


def test_thick_slices_record_their_thickness(dess_crop, thick):
    assert dess_crop.meta["slice_thickness_mm"] == pytest.approx(1.5)
    assert thick.meta["slice_thickness_mm"] == pytest.approx(4.5, rel=1e-4)
    geometry = selfsr.slice_geometry(thick, target_spacing=1.5)
    assert (geometry.factor, geometry.profile_width, geometry.grid_spacing) == (3, pytest.approx(3, rel=1e-4),
                                                                                 pytest.approx(1.5, rel=1e-4))
    assert selfsr.slice_geometry(thick).target_spacing == pytest.approx(4.5 / 14, rel=1e-4)  # ~ 0.3125 in-plane


def test_fast_size_beats_cubic_on_psnr_and_hfen_and_keeps_the_geometry(cli_run, dess_crop, thick):
    stdout, out = cli_run
    assert "selfsr: through-plane" in stdout and "epoch" in stdout  # progress is shown
    assert "out.nii.gz" in stdout and "1.5 x 0.3125 x 0.3125 mm" in stdout
    assert out.shape == dess_crop.shape
    np.testing.assert_allclose(out.spacing, dess_crop.spacing, atol=1e-4)
    np.testing.assert_allclose(out.affine, dess_crop.affine, atol=1e-3)  # the output grid is the original grid
    methods = {"cubic": resample(thick, dess_crop, order=3), "selfsr": out}
    table = score_table(methods, dess_crop).xs("foreground", level="region")
    assert table.loc["selfsr", "psnr_db"] > table.loc["cubic", "psnr_db"], table
    assert table.loc["selfsr", "hfen"] < table.loc["cubic", "hfen"], table


@pytest.fixture(scope="module")
def small_thick(thick) -> Volume:
    return _crop(thick, (0, 40, 40), (16, 96, 96))


def test_both_orientations_are_fused_and_the_output_is_deterministic(small_thick, monkeypatch):
    calls = []
    original = selfsr.through_plane

    def spy(model, volume, image_axis, batch_size=8):
        out = original(model, volume, image_axis, batch_size)
        calls.append((image_axis, out.clone()))
        return out

    monkeypatch.setattr(selfsr, "through_plane", spy)
    first = selfsr.super_resolve(small_thick, 1.5, TINY, device="cpu", progress=False, seed=3)
    assert sorted(axis for axis, _ in calls) == [1, 2]
    estimates = torch.stack([estimate for _, estimate in calls])
    assert not torch.allclose(estimates[0], estimates[1], atol=1e-3)  # two different views of the volume
    grid = selfsr.upsample_slices(small_thick, selfsr.slice_geometry(small_thick, 1.5))
    scale = float(np.percentile(grid.data, 99.5))
    fused = selfsr.fourier_burst_accumulation(estimates).numpy() * scale
    np.testing.assert_allclose(first.data, fused, rtol=1e-5, atol=1e-4 * scale)
    for estimate in estimates:  # the fusion is neither estimate alone
        assert np.abs(first.data - estimate.numpy() * scale).max() > 1e-3 * scale
    second = selfsr.super_resolve(small_thick, 1.5, TINY, device="cpu", progress=False, seed=3)
    np.testing.assert_array_equal(first.data, second.data)
    other = selfsr.super_resolve(small_thick, 1.5, TINY, device="cpu", progress=False, seed=4)
    assert not np.array_equal(first.data, other.data)


def test_fourier_burst_accumulation_keeps_the_detail_each_estimate_has():
    x = torch.linspace(0, 1, 32)
    smooth = torch.sin(2 * np.pi * x)[None].repeat(32, 1)
    detail_rows = smooth + 0.3 * torch.cos(2 * np.pi * 8 * x)[:, None]  # detail along axis 0 only
    detail_cols = smooth + 0.3 * torch.cos(2 * np.pi * 8 * x)[None, :]  # along axis 1 only
    fused = selfsr.fourier_burst_accumulation(torch.stack([detail_rows, detail_cols]), power=8)
    expected = smooth + 0.3 * torch.cos(2 * np.pi * 8 * x)[:, None] + 0.3 * torch.cos(2 * np.pi * 8 * x)[None, :]
    mean = selfsr.fourier_burst_accumulation(torch.stack([detail_rows, detail_cols]), power=0)
    assert (fused - expected).abs().max() < 0.05
    torch.testing.assert_close(mean, (detail_rows + detail_cols) / 2, atol=1e-5, rtol=0)


def test_consistency_gives_the_scan_back_when_the_slices_are_averaged(small_thick):
    from mrisr.physics.consistency import consistency_error

    geometry = selfsr.slice_geometry(small_thick, 1.5)
    out = selfsr.super_resolve(small_thick, 1.5, TINY, device="cpu", progress=False, consistency=True)
    assert consistency_error(out, small_thick, selfsr.forward_model(geometry)) < 0.01
    assert out.meta["data_consistency"]["error_after"] < out.meta["data_consistency"]["error_before"]


@pytest.mark.parametrize("shape, spacing, message", [
    ((16, 32, 32), (1.0, 1.0, 1.0), "nothing to do"),
    ((1, 32, 32), (4.0, 1.0, 1.0), "2D image"),
    ((4, 32, 32), (4.0, 1.0, 1.0), "has 4 slices"),
    ((16, 32, 32), (1.0, 4.0, 1.0), "coarsest axis is in-plane"),
])
def test_bad_scans_get_one_line_errors_naming_the_file(shape, spacing, message, tmp_path, capsys):
    from mrisr.cli import main
    from mrisr.io import save_volume

    scan = save_volume(Volume.from_spacing(np.random.default_rng(0).random(shape, np.float32), spacing),
                       tmp_path / "scan.nii.gz")
    assert main(["selfsr", str(scan), str(tmp_path / "out.nii.gz")]) == 1
    stderr = capsys.readouterr().err
    assert stderr.strip().count("\n") == 0 and "scan.nii.gz" in stderr and message in stderr, stderr
    assert not (tmp_path / "out.nii.gz").exists()


def test_the_input_is_never_the_output(thick, tmp_path, capsys):
    from mrisr.cli import main
    from mrisr.io import save_volume

    scan = save_volume(thick, tmp_path / "thick.nii.gz")
    before = scan.read_bytes()
    assert main(["selfsr", str(scan), str(scan)]) == 2
    assert "thick.nii.gz" in capsys.readouterr().err and scan.read_bytes() == before


def test_a_target_spacing_that_does_not_divide_the_slices_is_resampled_from_a_finer_grid(thick, small_thick):
    geometry = selfsr.slice_geometry(thick, target_spacing=2.0)  # 4.5 / 2.0 = 2.25: the network works at 1.5 mm
    assert (geometry.factor, geometry.grid_spacing, geometry.target_spacing) == (3, pytest.approx(1.5, rel=1e-4), 2.0)
    with pytest.raises(InputError, match="nothing to do"):
        selfsr.slice_geometry(thick, target_spacing=4.5)
    # On the grid, a cubic along the slice axis is resampled exactly, and the affine places every new slice.
    z = np.arange(30, dtype=np.float64)[:, None, None] * 1.5
    ramp = Volume(np.broadcast_to(z ** 3 / 100, (30, 4, 5)).astype(np.float32), np.diag([1.5, 1.0, 1.0, 1.0]))
    geometry = selfsr.SliceGeometry(4.5, 4.5, (1.0, 1.0), 1.5, 2.0)  # exactly 1.5 mm, as the ramp's grid
    ramp.affine[:3, 3] = (7.0, 2.0, 3.0)
    out = selfsr.to_target_grid(ramp, geometry)
    assert out.shape == (22, 4, 5) and out.spacing[0] == pytest.approx(2.0)  # 29 x 1.5 mm span, slices 2 mm apart
    positions = (out.affine @ np.stack([np.arange(22), np.zeros(22), np.zeros(22), np.ones(22)]))[0] - 7.0
    np.testing.assert_allclose(positions, np.arange(22) * 2.0)
    np.testing.assert_allclose(out.data[1:-2, 0, 0], positions[1:-2] ** 3 / 100, rtol=2e-3)  # ends: border mode
    sr = selfsr.super_resolve(small_thick, 2.0, TINY, device="cpu", progress=False)
    assert sr.spacing[0] == pytest.approx(2.0) and sr.meta["selfsr"]["grid_spacing_mm"] == pytest.approx(1.5, rel=1e-4)
    np.testing.assert_allclose(sr.affine[:3, 3], selfsr.upsample_slices(small_thick, geometry).affine[:3, 3])


def test_a_gap_and_a_gaussian_profile_come_from_the_header_or_the_call(thick):
    gapped = Volume(thick.data, thick.affine, {**thick.meta, "slice_thickness_mm": 3.3})  # 3.3 mm slices 4.5 apart
    geometry = selfsr.slice_geometry(gapped, target_spacing=1.5, profile="gaussian")
    assert geometry.profile_width == pytest.approx(2.2, rel=1e-4) and geometry.slice_profile().shape == "gaussian"
    pairs = selfsr.training_degradation(geometry)
    assert pairs.steps[0].width == pytest.approx(2.2, rel=1e-4) and pairs.steps[0].stride == 3
    with pytest.raises(ValueError, match="profile must be one of"):
        selfsr.slice_geometry(gapped, profile="triangle")


def test_the_thick_slice_study_needs_the_scans_own_noise_level(dess_crop):
    """The study adds a new realisation of the scan's noise: without a measured level it refuses, saying what to do."""
    from mrisr.evaluation.thick_slices import thick_slice_study

    bare = Volume(dess_crop.data, dess_crop.affine, {k: v for k, v in dess_crop.meta.items() if k != "noise_sigma"})
    with pytest.raises(ValueError, match=r"with_noise_sigma"):
        thick_slice_study(bare, 3)


def test_target_spacing_is_one_number_along_the_slices(thick):
    with pytest.raises(TypeError, match=r"one number.*along the slice axis.*got \(4.0, 1.0, 1.0\)"):
        selfsr.slice_geometry(thick, target_spacing=(4.0, 1.0, 1.0))
