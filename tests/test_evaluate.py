"""Experiment tables: a row per subject, method and region; paired differences with Student-t intervals."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mrisr import Volume
from mrisr.degrade import preset
from mrisr.evaluate import (COLUMNS, HR_LABEL, LR_LABEL, best_baseline, compare, save_tables, style, summarize,
                            verdict)
from mrisr.models import EDSR3D
from mrisr.phantom import knee_phantom


def test_compare_scores_every_subject_method_and_region(dess_block):
    """Two subjects (a phantom and a real knee block); an untrained EDSR3D is the identity, so it must score
    exactly as the degraded input it receives."""
    cases = {"phantom": knee_phantom(shape=(24, 48, 48), seed=1),
             "knee": Volume(dess_block.data[:16, :64, :64], dess_block.affine, dess_block.meta)}
    table, volumes = compare({"identity": EDSR3D(n_feats=4, n_blocks=1)}, cases, preset("knee_fast_acquisition"),
                             keep=["knee"], device="cpu")
    assert len(table) == 2 * 2 * 2  # subjects x (baseline + model) x regions
    assert set(table["method"]) == {"degraded input", "identity"}
    assert set(table.loc[table["method"] == "identity", "kind"]) == {"model"}
    for _, rows in table.groupby(["subject", "region"]):
        model, baseline = rows.set_index("method").loc[["identity", "degraded input"], COLUMNS].to_numpy()
        np.testing.assert_allclose(model, baseline, rtol=1e-4)
    assert list(volumes) == ["knee"] and list(volumes["knee"]) == [LR_LABEL, "identity", HR_LABEL]

    table2, _ = compare({}, {"p": cases["phantom"]}, preset("cardiac_x4"), device="cpu")
    assert set(table2["method"]) == {"nearest", "linear", "cubic"}
    assert best_baseline(table2) == table2[table2.region == "foreground"].set_index("method")["psnr_db"].idxmax()


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
    assert verdict(summary)[0].startswith("net beats the best baseline (cubic): psnr_db +0.600")
    assert "does NOT beat" in verdict(summarize(_synthetic([-0.3, 0.1])))[0]
    single = summarize(_synthetic([0.5]))
    assert np.isnan(single.loc[("net", "ci_low"), "psnr_db"]) and "no confidence interval" in verdict(single)[0]
    assert "font-weight: bold" in style(summary).to_html()


def test_tables_are_saved_as_csv_and_markdown(tmp_path):
    table = _synthetic([0.4, 1.1, 0.6])
    summary = summarize(table)
    csv, summary_csv, md = save_tables(table, summary, tmp_path / "knee")
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    assert pd.read_csv(summary_csv, index_col=[0, 1]).loc[("net", "vs cubic"), "psnr_db"] == pytest.approx(0.7)
    text = md.read_text()
    assert "| net | vs cubic | 0.7000 |" in text and len(re.findall(r"^\| s\d \|", text, re.M)) == len(table)
    assert "net beats the best baseline" in text
