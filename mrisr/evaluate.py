"""Scores of volumes against a reference, as tables: the numbers every experiment reports.

A score is computed over the image axes of the experiment (``ndim=3`` for the knee; ``ndim=2`` for slice-wise 2D
super-resolution, every slice and frame pooled into one number per volume), on the subject's foreground
(`mrisr.foreground.foreground_mask`) and on the whole volume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mrisr import metrics
from mrisr.baselines import baselines
from mrisr.degrade import Degradation
from mrisr.foreground import foreground_mask
from mrisr.volume import Volume

COLUMNS = ["psnr_db", "ssim", "nrmse", "hfen"]


def score(pred: Volume, target: Volume, data_range: float, mask: np.ndarray | None = None, ndim: int = 3) -> dict:
    """PSNR (dB), SSIM, NRMSE and HFEN of ``pred`` against ``target`` (same grid), pooled over the whole volume.

    ``mask`` may stack several regions along a leading axis; each score is then an array, one value per region.
    """
    if pred.data.shape != target.data.shape:
        raise ValueError(f"cannot score a {pred.data.shape} volume against a {target.data.shape} reference")
    p, t = pred.data, target.data
    return {"psnr_db": metrics.psnr(p, t, data_range, mask, ndim, pooled=True),
            "ssim": metrics.ssim(p, t, data_range, mask, ndim, pooled=True),
            "nrmse": metrics.nrmse(p, t, mask, ndim, pooled=True),
            "hfen": metrics.hfen(p, t, mask, ndim, pooled=True)}


def score_table(methods: dict[str, Volume], target: Volume, data_range: float | None = None,
                mask: np.ndarray | None = None, ndim: int = 3) -> pd.DataFrame:
    """One row per (method, region), region ``"foreground"`` and ``"whole"``; columns `COLUMNS`.

    ``data_range`` defaults to the reference's max minus min; ``mask`` defaults to `foreground_mask` of the target.
    """
    data_range = float(target.data.max() - target.data.min()) if data_range is None else data_range
    mask = foreground_mask(target) if mask is None else mask
    regions = {"foreground": mask, "whole": np.ones_like(mask)}
    stacked = np.stack([np.broadcast_to(m, target.data.shape) for m in regions.values()])
    rows = []
    for name, volume in methods.items():
        scores = score(volume, target, data_range, stacked, ndim)
        rows += [{"method": name, "region": region, **{k: float(v[i]) for k, v in scores.items()}}
                 for i, region in enumerate(regions)]
    return pd.DataFrame(rows).set_index(["method", "region"])


def baseline_table(hr: Volume, degradation: Degradation, seed: int = 0, data_range: float | None = None,
                   mask: np.ndarray | None = None) -> pd.DataFrame:
    """Degrade ``hr`` and score every interpolation baseline against it (see `score_table`)."""
    lr = degradation(hr, seed=seed)
    return score_table(baselines(lr, hr), hr, data_range, mask, degradation.ndim)
