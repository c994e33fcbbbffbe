"""Experiment tables: a row per subject, method and region; paired differences with Student-t intervals."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from mrisr import Volume
from mrisr.data.phantom import knee_phantom
from mrisr.evaluation.tables import (COLUMNS, CONSISTENCY, HR_LABEL, LR_LABEL, best_baseline, block_length,
                                     bootstrap_interval, compare, gain_lines, gains_over, lag1_autocorrelation,
                                     save_tables, seed_runs, style, summarize, verdict, verdict_lines)
from mrisr.networks.models import EDSR3D
from mrisr.physics.degrade import preset


def test_compare_scores_every_subject_method_and_region(dess_block):
    """Two subjects (a phantom and a real knee block); an untrained EDSR3D is the identity, so it must score
    exactly as the degraded input it receives."""
    cases = {"phantom": knee_phantom(shape=(24, 48, 48), seed=1),
             "knee": Volume(dess_block.data[:16, :64, :64], dess_block.affine, dess_block.meta)}
    table, volumes = compare({"identity": EDSR3D(n_feats=4, n_blocks=1)}, cases,
                             preset("knee_fast_acquisition_noise_free"), keep=["knee"], device="cpu")
    assert len(table) == 2 * 2 * 2  # subjects x (baseline + model) x regions
    assert set(table["method"]) == {"degraded input", "identity"}
    assert set(table.loc[table["method"] == "identity", "kind"]) == {"model"}
    for _, rows in table.groupby(["subject", "region"]):
        model, baseline = rows.set_index("method").loc[["identity", "degraded input"], COLUMNS].to_numpy()
        np.testing.assert_allclose(model, baseline, rtol=1e-4)
    assert list(volumes) == ["knee"] and list(volumes["knee"]) == [LR_LABEL, "identity", HR_LABEL]
    by_method = table.groupby("method")[CONSISTENCY]
    np.testing.assert_allclose(by_method.get_group("identity").to_numpy(),
                               by_method.get_group("degraded input").to_numpy(), rtol=1e-4)
    assert (table[CONSISTENCY] > 0.01).all()  # the input degraded again is not the input: it lost more k-space

    table2, _ = compare({}, {"p": cases["phantom"]}, preset("cardiac_x4_noise_free"), device="cpu")
    assert set(table2["method"]) == {"nearest", "linear", "cubic"}
    assert best_baseline(table2) == table2[table2.region == "foreground"].set_index("method")["psnr_db"].idxmax()


def test_compare_with_consistency_adds_a_dc_row_that_puts_the_measurement_back(dess_block):
    """A 'model' that blurs everything is inconsistent with its input; the +DC row restores the measured band and
    so scores better than the model alone, with a consistency error near zero."""
    import torch

    class Blur(torch.nn.Module):
        ndim, scale = 3, 1

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 1, 3, padding=1, bias=False)
            torch.nn.init.constant_(self.conv.weight, 1 / 27)

        def receptive_radius(self):
            return 1

        def forward(self, x):
            return self.conv(x)

    cases = {"knee": Volume(dess_block.data[:16, :64, :64], dess_block.affine, dess_block.meta)}
    table, _ = compare({"blur": Blur()}, cases, preset("knee_fast_acquisition_noise_free"), consistency=True,
                       device="cpu")
    rows = table[table.region == "foreground"].set_index("method")
    assert list(rows.index) == ["degraded input", "blur", "degraded input+DC", "blur+DC"]
    assert rows.loc["blur+DC", "kind"] == "model" and rows.loc["degraded input+DC", "kind"] == "baseline"
    assert rows.loc["blur", CONSISTENCY] > 0.05 and rows.loc["blur+DC", CONSISTENCY] < 1e-3
    assert rows.loc["blur+DC", "psnr_db"] > rows.loc["blur", "psnr_db"] + 1
    summary = summarize(table)
    best = summary.attrs["best_baseline"]
    assert ("blur+DC", f"vs {best}") in summary.index and CONSISTENCY in summary.columns


def _synthetic(diffs: list[float]) -> pd.DataFrame:
    rows = []
    for k, d in enumerate(diffs):
        for method, kind, psnr in [("cubic", "baseline", 30.0 + k), ("nearest", "baseline", 28.0 + k),
                                   ("net", "model", 30.0 + k + d)]:
            rows.append({"subject": f"s{k}", "method": method, "kind": kind, "region": "foreground",
                         "psnr_db": psnr, "ssim": 0.9, "nrmse": 0.1, "hfen": 0.2})
    return pd.DataFrame(rows)


def test_summary_paired_difference_and_interval_match_scipy():
    diffs = [0.4, 1.1, 0.7, 0.2]
    summary = summarize(_synthetic(diffs))
    assert summary.attrs["best_baseline"] == "cubic" and summary.attrs["n_subjects"] == 4
    assert summary.loc[("net", "vs cubic"), "psnr_db"] == pytest.approx(np.mean(diffs))
    low, high = stats.t.interval(0.95, len(diffs) - 1, loc=np.mean(diffs), scale=stats.sem(diffs))
    assert summary.loc[("net", "ci_low"), "psnr_db"] == pytest.approx(low)
    assert summary.loc[("net", "ci_high"), "psnr_db"] == pytest.approx(high)
    assert summary.loc[("cubic", "mean"), "psnr_db"] == pytest.approx(31.5)
    assert summary.loc[("cubic", "std"), "psnr_db"] == pytest.approx(np.std([30, 31, 32, 33], ddof=1))
    # +0.6 on average, but the interval over four subjects reaches below zero: not a win
    assert verdict_lines(summary)[0].startswith("net against the best baseline (cubic): psnr_db not distinguishable "
                                                "(+0.600; 95 % CI -0.02")
    assert "psnr_db better (+0.575" in verdict_lines(summarize(_synthetic([0.5, 0.6, 0.7, 0.5])))[0]
    assert "psnr_db worse" in verdict_lines(summarize(_synthetic([-0.5, -0.6, -0.7, -0.5])))[0]
    single = summarize(_synthetic([0.5]))
    assert np.isnan(single.loc[("net", "ci_low"), "psnr_db"])
    assert "no interval over subjects" in verdict_lines(single)[0]
    assert "font-weight: bold" in style(summary).to_html()


def test_tables_are_saved_as_csv_and_markdown(tmp_path):
    table = _synthetic([0.4, 1.1, 0.6])
    summary = summarize(table)
    csv, summary_csv, md = save_tables(table, summary, tmp_path / "knee")
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    assert pd.read_csv(summary_csv, index_col=[0, 1]).loc[("net", "vs cubic"), "psnr_db"] == pytest.approx(0.7)
    text = md.read_text()
    assert "| net | vs cubic | 0.7000 |" in text and len(re.findall(r"^\| s\d \|", text, re.M)) == len(table)
    assert "net against the best baseline (cubic): psnr_db not distinguishable" in text


def test_feature_distances_share_the_targets_features_and_equal_the_perceptual_loss(dess_block, sample_data):
    """One VGG pass over the target serves every prediction; each distance is the perceptual loss itself over every
    slice along each axis (on the target's intensity scale)."""
    import torch

    from mrisr.evaluation.tables import feature_distance, feature_distances
    from mrisr.networks.losses import PerceptualLoss, as_slices
    from mrisr.volume import intensity_scale

    block = Volume.from_spacing(dess_block.data[:8, :48, :40], dess_block.spacing, dess_block.meta)
    lr = preset("knee_fast_acquisition_noise_free")(block, seed=0)
    perceptual = PerceptualLoss(weights=sample_data / "vgg16/vgg16_features_block1-3.pth", normalization="caffe")
    distances = feature_distances({"LR": lr, "HR": block}, block, perceptual, chunk=5)
    assert distances["HR"] == 0.0 and distances["LR"] > 0
    assert feature_distance(lr, block, perceptual, chunk=5) == pytest.approx(distances["LR"], rel=1e-6)
    scale = intensity_scale(block.data)
    p, t = (torch.from_numpy((v.data / scale).astype(np.float32))[None, None] for v in (lr, block))
    with torch.no_grad():
        expected = np.mean([float(perceptual(as_slices(p, axis), as_slices(t, axis))) for axis in (2, 3, 4)])
    assert distances["LR"] == pytest.approx(expected, rel=1e-4)
    with torch.no_grad():
        every_third = np.mean([float(perceptual(as_slices(p, axis)[::3], as_slices(t, axis)[::3]))
                               for axis in (2, 3, 4)])
    stepped = feature_distances({"LR": lr}, block, perceptual, chunk=5, step=3)["LR"]
    assert stepped == pytest.approx(every_third, rel=1e-4) and stepped != pytest.approx(expected, rel=1e-6)


def test_the_verdict_gives_all_three_outcomes_by_the_interval():
    assert verdict(0.1, 0.5) == "better" and verdict(-0.5, -0.1) == "worse"
    assert verdict(-0.1, 0.5) == "not distinguishable" and verdict(float("nan"), float("nan")) == "not distinguishable"
    assert verdict(-0.5, -0.1, higher_is_better=False) == "better"  # HFEN: lower is sharper
    # tiny differences are not verdicts: the notebook-04 HFEN case (0.093693 against 0.093699) over noisy slices
    rng = np.random.default_rng(0)
    _, low, high, _ = bootstrap_interval(-6e-6 + 1e-3 * rng.standard_normal(80))
    assert verdict(low, high, higher_is_better=False) == "not distinguishable"


def test_the_interval_widens_for_correlated_slices_and_for_spread_between_seeds():
    rng = np.random.default_rng(1)
    white = 0.5 + 0.2 * rng.standard_normal(200)
    correlated = 0.5 + 0.2 * ndimage.gaussian_filter1d(rng.standard_normal(200), 3.0) * 3.0
    assert lag1_autocorrelation(correlated) > 0.8 and abs(lag1_autocorrelation(white)) < 0.2
    assert block_length(correlated) > block_length(white) == 1
    width = {name: np.subtract(*bootstrap_interval(g)[2:0:-1]) for name, g in (("white", white),
                                                                             ("correlated", correlated))}
    naive = 2 * 1.97 * correlated.std(ddof=1) / np.sqrt(200)  # Student's t, as if the slices were independent
    assert width["correlated"] > 1.5 * naive
    seeds = np.stack([white + offset for offset in (-0.3, 0.0, 0.3)])  # three trainings that disagree
    mean, low, high, _ = bootstrap_interval(seeds)
    assert mean == pytest.approx(white.mean()) and high - low > 3 * width["white"]
    assert verdict(*bootstrap_interval(white)[1:3]) == "better"


def test_gains_over_pools_seeds_and_names_the_verdict():
    hr = Volume.from_spacing(np.random.default_rng(2).uniform(1, 2, (12, 32, 32)).astype(np.float32) * 100)
    near = hr.with_data(hr.data + 1.0)
    cubic = hr.with_data(hr.data + 3.0)  # a baseline: the same volume in every seed's run
    runs = [{"s": {"baseline": hr.with_data(hr.data + 5.0), "net": hr.with_data(hr.data + d), "cubic": cubic,
                   HR_LABEL: hr}} for d in (1.0, 1.5, 2.0)]
    gains = gains_over(runs, baseline="baseline")
    row = gains.loc[("s", "net")]
    assert row["seeds"] == 3 and row["verdict"] == "better" and row["ci_low"] > 0
    assert gains.loc[("s", "cubic"), "seeds"] == 1
    lines = gain_lines(gains, "baseline")
    assert lines[0].startswith("s: net against baseline: PSNR better (") and "3 seeds" in lines[0]
    volumes = {"s": {"a": near, "b": near, HR_LABEL: hr}}
    assert gains_over(volumes, baseline="a").loc[("s", "b"), "verdict"] == "not distinguishable"
    renamed = seed_runs({"s": {"net (seed 0)": near, "net (seed 0)+DC": near, "net (seed 1)": hr, "cubic": hr,
                               HR_LABEL: hr}}, range(2))
    assert list(renamed[0]["s"]) == ["net", "net+DC", "cubic", HR_LABEL] and list(renamed[1]["s"]) == ["net", "cubic",
                                                                                                     HR_LABEL]


def test_the_interval_holds_the_mean_when_the_end_slices_differ():
    """A series whose ends differ from its middle (tissue thinning out at a slab's edges): the circular block
    bootstrap draws every slice equally often, so its interval is centred on the mean, not pulled to the middle."""
    gains = np.concatenate([np.full(20, -1.0), np.full(160, 1.0), np.full(20, -1.0)])
    gains = gains + 0.05 * np.random.default_rng(3).standard_normal(200)
    mean, low, high, block = bootstrap_interval(gains)
    assert block > 1 and low < mean < high
    assert abs((low + high) / 2 - mean) < 0.25 * (high - low)
