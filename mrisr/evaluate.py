"""Scores of volumes against a reference, as tables: the numbers every experiment reports.

A score is computed over the image axes of the experiment (``ndim=3`` for the knee; ``ndim=2`` for slice-wise 2D
super-resolution, every slice and frame pooled into one number per volume), on the subject's foreground
(`mrisr.foreground.foreground_mask`) and on the whole volume.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from mrisr import metrics
from mrisr.baselines import baselines
from mrisr.consistency import consistency_error, enforce
from mrisr.degrade import Degradation
from mrisr.distributed import gather
from mrisr.foreground import foreground_mask
from mrisr.inference import predict_volume
from mrisr.io.atomic import atomic_path
from mrisr.losses import as_slices
from mrisr.volume import Volume, intensity_scale

COLUMNS = ["psnr_db", "ssim", "nrmse", "hfen"]
CONSISTENCY = "consistency_error"  # ||A(method) - lr|| / ||lr||: how far a method's output is from explaining the scan
DC_SUFFIX = "+DC"


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


# -- experiments: models against baselines, over subjects -----------------------------------------------------------

LR_LABEL, HR_LABEL = "LR input", "HR"
HIGHER_IS_BETTER = {"psnr_db": True, "ssim": True, "nrmse": False, "hfen": False, CONSISTENCY: False}


def compare(models: dict[str, object], cases: dict[str, Volume], degradation: Degradation, seed: int = 0,
            keep: bool | list[str] = False, consistency: bool = False,
            **predict_options) -> tuple[pd.DataFrame, dict[str, dict[str, Volume]]]:
    """Degrade each high-resolution case, super-resolve it with every model, and score models and baselines.

    Args:
        models: label -> network (`mrisr.models`), run by `mrisr.inference.predict_volume`.
        cases: subject name -> high-resolution `Volume` (the reference).
        degradation: what made the low-resolution input (the same for every case; ``seed`` per case is fixed).
        keep: keep the volumes (``True``, or a list of subject names) for figures and animations.
        consistency: also score every method made consistent with the input (`mrisr.consistency.enforce`), as
            ``"<method>+DC"`` rows of the method's kind: a baseline made consistent is a baseline too (for
            reduced-grid degradations, interpolation followed by back-projection, Irani and Peleg 1991).
        **predict_options: passed to `predict_volume` (device, dtype, tile_size, ...).

    Several processes (a ``torchrun`` launch): each passes its share of the cases (`mrisr.distributed.share`) and
    every process gets the table of all of them, in subject order; ``volumes`` holds this process's cases only.

    Returns:
        ``(table, volumes)``: one row per (subject, method, region) with ``kind`` ``"baseline"`` or ``"model"``, the
        `COLUMNS` scores and `CONSISTENCY` (``||A(output) - input|| / ||input||``, the same for both regions);
        ``volumes[subject]`` maps ``"LR input"``, every method (but the ``"degraded input"`` baseline, which is the
        LR input) and ``"HR"`` to its `Volume`: ready for `mrisr.render.animate`.
    """
    tables, volumes = [], {}
    for name, hr in cases.items():
        lr = degradation(hr, seed=seed)
        methods = baselines(lr, hr)
        kinds = dict.fromkeys(methods, "baseline")
        for label, model in models.items():
            methods[label] = predict_volume(model, lr, **predict_options)
            kinds[label] = "model"
        if consistency:  # every method made consistent, baselines too (interpolation + back-projection)
            for label in list(methods):
                methods[label + DC_SUFFIX] = enforce(methods[label], lr, degradation,
                                                     device=predict_options.get("device"))
                kinds[label + DC_SUFFIX] = kinds[label]
        table = score_table(methods, hr, ndim=degradation.ndim).reset_index()
        table.insert(0, "subject", name)
        table.insert(2, "kind", table["method"].map(kinds))
        errors = {label: consistency_error(volume, lr, degradation) for label, volume in methods.items()}
        table[CONSISTENCY] = table["method"].map(errors)
        tables.append(table)
        if keep is True or (keep and name in keep):
            volumes[name] = {LR_LABEL: lr, **{k: v for k, v in methods.items() if v is not lr}, HR_LABEL: hr}
    # every process's rows, back in the order of the cases `share` dealt out (one process: its own, as they are)
    tables = [table for group in itertools.zip_longest(*gather(tables)) for table in group if table is not None]
    return pd.concat(tables, ignore_index=True), volumes


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its ``confidence`` interval (Student's t; ``nan`` bounds
    with fewer than two values)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def slice_scores(volume: Volume, target: Volume, data_range: float | None = None, mask: np.ndarray | None = None,
                 min_voxels: int = 100, axis: int = 0) -> pd.DataFrame:
    """Per slice along volume ``axis`` (0: slices; 1 or 2: the reformatted planes that contain the slice axis), the
    2D scores of ``volume`` against ``target``: columns ``psnr_db``, ``ssim`` and ``hfen``, indexed by slice number,
    on the foreground (``mask``, default `foreground_mask` of the target) of the slices with at least ``min_voxels``
    of it. ``data_range`` defaults to the target's max minus min, as `score_table`. Time series ``(T, S, R, C)``:
    every frame's slices, indexed by ``(frame, slice)``, on the mask of the time average."""
    data_range = float(target.data.max() - target.data.min()) if data_range is None else data_range
    if target.data.ndim == 4:
        mask = foreground_mask(target) if mask is None else mask
        return pd.concat({t: slice_scores(volume.with_data(volume.data[t]), target.with_data(target.data[t]),
                                          data_range, mask, min_voxels, axis) for t in range(target.data.shape[0])},
                         names=["frame", "slice"])
    mask = np.moveaxis(foreground_mask(target) if mask is None else mask, axis, 0)
    keep = mask.reshape(mask.shape[0], -1).sum(1) >= min_voxels
    pred, ref, mask = np.moveaxis(volume.data, axis, 0)[keep], np.moveaxis(target.data, axis, 0)[keep], mask[keep]
    return pd.DataFrame({"psnr_db": metrics.psnr(pred, ref, data_range, mask, ndim=2),
                         "ssim": metrics.ssim(pred, ref, data_range, mask, ndim=2),
                         "hfen": metrics.hfen(pred, ref, mask, ndim=2)}, index=np.flatnonzero(keep)).astype(np.float64)


def slice_gains(method: Volume, baseline: Volume, target: Volume, data_range: float | None = None,
                mask: np.ndarray | None = None, min_voxels: int = 100, axis: int = 0) -> pd.DataFrame:
    """`slice_scores` of ``method`` minus those of ``baseline``, slice by slice: PSNR and SSIM gains (higher is
    better) and the HFEN change (lower is better). Neighbouring slices are correlated, so an interval over them is
    narrower than one over subjects would be."""
    return (slice_scores(method, target, data_range, mask, min_voxels, axis)
            - slice_scores(baseline, target, data_range, mask, min_voxels, axis))


def gains_over(volumes: dict[str, dict[str, Volume]], baseline: str = LR_LABEL, axis: int = 0,
               confidence: float = 0.95) -> pd.DataFrame:
    """The gain of every method over ``baseline`` on each subject, with an interval even for one subject.

    ``volumes`` is what `compare` keeps (subject -> method -> `Volume`, ``HR_LABEL`` the reference, all on one grid).
    Rows ``(subject, method)``; columns ``psnr_gain_db`` (mean over slices along ``axis`` of `slice_gains`),
    ``ci_low`` / ``ci_high`` (its ``confidence`` interval, Student's t over the slices: neighbouring slices are
    correlated, so it is optimistic), ``hfen_change`` (mean over slices; negative is sharper) and ``slices``.
    Volumes off the reference grid (a low-resolution input) are left out.
    """
    rows = []
    for subject, methods in volumes.items():
        target = methods[HR_LABEL]
        # `slice_gains` per method, with the reference's mask and range and the baseline's scores computed once
        data_range, mask = float(target.data.max() - target.data.min()), foreground_mask(target)
        base = slice_scores(methods[baseline], target, data_range, mask, axis=axis)
        for method, volume in methods.items():
            if method in (baseline, HR_LABEL) or volume.data.shape != target.data.shape:
                continue
            gains = slice_scores(volume, target, data_range, mask, axis=axis) - base
            mean, low, high = mean_interval(gains["psnr_db"], confidence)
            rows.append({"subject": subject, "method": method, "psnr_gain_db": mean, "ci_low": low, "ci_high": high,
                         "hfen_change": float(gains["hfen"].mean()), "slices": len(gains)})
    return pd.DataFrame(rows).set_index(["subject", "method"])


def best_baseline(table: pd.DataFrame, region: str = "foreground", metric: str = "psnr_db") -> str:
    """The baseline with the best mean ``metric`` over subjects."""
    rows = table[(table["kind"] == "baseline") & (table["region"] == region)]
    if rows.empty:
        raise ValueError("the table has no baseline rows")
    means = rows.groupby("method")[metric].mean()
    return str(means.idxmax() if HIGHER_IS_BETTER[metric] else means.idxmin())


def summarize(table: pd.DataFrame, region: str = "foreground", confidence: float = 0.95) -> pd.DataFrame:
    """Summary of a `compare` table over subjects, for one region.

    Rows ``(method, "mean")`` and ``(method, "std")`` for every method; for every model, ``(model, "vs <best>")``:
    the mean paired difference (model minus the best baseline, subject by subject), with ``"ci_low"`` /
    ``"ci_high"`` rows bounding its ``confidence`` interval (Student's t over subjects; ``nan`` with one subject).
    """
    rows = table[table["region"] == region]
    best = best_baseline(table, region)
    columns = [c for c in [*COLUMNS, CONSISTENCY] if c in table]
    by_method = {m: g.set_index("subject")[columns] for m, g in rows.groupby("method", sort=False)}
    out = {}
    for method, scores in by_method.items():
        out[(method, "mean")] = scores.mean()
        out[(method, "std")] = scores.std(ddof=1) if len(scores) > 1 else scores.mean() * np.nan
    for method in rows.loc[rows["kind"] == "model", "method"].unique():
        diff = (by_method[method] - by_method[best]).dropna()
        intervals = {c: mean_interval(diff[c], confidence) for c in diff}
        for k, statistic in enumerate((f"vs {best}", "ci_low", "ci_high")):
            out[(method, statistic)] = pd.Series({c: v[k] for c, v in intervals.items()})
    summary = pd.DataFrame(out).T
    summary.index.names = ["method", "statistic"]
    summary.attrs.update(region=region, best_baseline=best, n_subjects=int(rows["subject"].nunique()),
                         confidence=confidence)
    return summary


def verdict(summary: pd.DataFrame, metric: str = "psnr_db") -> list[str]:
    """One sentence per model: does it beat the best baseline on ``metric``, by how much, and how sure is that."""
    best, level = summary.attrs["best_baseline"], int(round(100 * summary.attrs["confidence"]))
    lines = []
    for method, statistic in summary.index:
        if statistic != f"vs {best}":
            continue
        diff = summary.loc[(method, statistic), metric]
        low, high = summary.loc[(method, "ci_low"), metric], summary.loc[(method, "ci_high"), metric]
        better = diff > 0 if HIGHER_IS_BETTER[metric] else diff < 0
        ci = (f"{level} % CI {low:+.3f} to {high:+.3f}" if np.isfinite(low)
              else "one subject: no confidence interval")
        lines.append(f"{method} {'beats' if better else 'does NOT beat'} the best baseline ({best}): {metric} "
                     f"{diff:+.3f} ({ci}, n = {summary.attrs['n_subjects']})")
    return lines


def to_markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A pipe table of ``frame`` (index included), numbers with ``digits`` decimals. (Not ``DataFrame.to_markdown``:
    it needs the tabulate package, which nothing else here needs.)"""
    frame = frame.reset_index() if any(n is not None for n in frame.index.names) else frame
    cells = [[f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def save_tables(table: pd.DataFrame, summary: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Write ``<stem>.csv`` (per-subject rows), ``<stem>_summary.csv`` and ``<stem>.md`` (both, with the verdict),
    each atomically. Returns the paths."""
    stem = Path(stem)
    paths = [stem.with_suffix(".csv"), stem.with_name(stem.name + "_summary.csv"), stem.with_suffix(".md")]
    with atomic_path(paths[0], ".csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(paths[1], ".csv") as tmp:
        summary.to_csv(tmp)
    region = summary.attrs.get("region", "foreground")
    text = (f"# {stem.name}\n\n## Summary ({region}, {summary.attrs.get('n_subjects')} subject(s))\n\n"
            + to_markdown(summary) + "\n" + "\n".join(f"- {line}" for line in verdict(summary))
            + "\n\n## Per subject\n\n" + to_markdown(table))
    with atomic_path(paths[2], ".md") as tmp:
        tmp.write_text(text)
    return paths


def style(summary: pd.DataFrame):
    """The summary as a pandas ``Styler`` for notebooks: 4 decimals, each metric's best mean in bold."""
    means = summary.xs("mean", level="statistic")

    def bold_best(column):
        best = means[column.name].max() if HIGHER_IS_BETTER[column.name] else means[column.name].min()
        is_best = (column.index.get_level_values("statistic") == "mean") & np.isclose(column, best)
        return ["font-weight: bold" if b else "" for b in is_best]

    return summary.style.format("{:.4f}").apply(bold_best, subset=[c for c in [*COLUMNS, CONSISTENCY]
                                                                    if c in summary])


def feature_distance(pred: Volume, target: Volume, perceptual, ndim: int = 3, device="cpu",
                     chunk: int = 16) -> float:
    """VGG16 feature distance (a `mrisr.losses.PerceptualLoss`) of ``pred`` from ``target``: every slice along each
    of the ``ndim`` last axes (one axis: in-plane images only when ``ndim=2``), both divided by the target's intensity
    scale (`mrisr.volume.intensity_scale`), ``chunk`` slices at a time; the mean over slices and axes."""
    return feature_distances({"pred": pred}, target, perceptual, ndim, device, chunk)["pred"]


def feature_distances(preds: dict[str, Volume], target: Volume, perceptual, ndim: int = 3, device="cpu",
                      chunk: int = 16) -> dict[str, float]:
    """`feature_distance` of each of ``preds`` (label -> `Volume`) from one ``target``, whose VGG features are
    computed once for all of them."""
    import torch

    scale = intensity_scale(target.data)

    def tensor(volume):  # (frames, 1, S, R, C), on the target's scale
        data = torch.from_numpy(np.ascontiguousarray(volume.data / scale, np.float32))
        return data.reshape(-1, 1, *data.shape[-3:])

    t, ps = tensor(target), {label: tensor(v) for label, v in preds.items()}
    perceptual = perceptual.to(device)
    per_axis = {label: [] for label in preds}
    with torch.no_grad():
        for axis in (2, 3, 4) if ndim == 3 else (2,):
            target_slices = as_slices(t, axis)  # (frames x slices along axis, 1, a, b)
            pred_slices = {label: as_slices(p, axis) for label, p in ps.items()}
            totals = dict.fromkeys(preds, 0.0)
            for start in range(0, len(target_slices), chunk):
                target_features = perceptual.vgg(target_slices[start:start + chunk].to(device))
                for label, slices in pred_slices.items():
                    a = slices[start:start + chunk].to(device)
                    totals[label] += float(perceptual.feature_loss(perceptual.vgg(a), target_features)) * len(a)
            for label in preds:
                per_axis[label].append(totals[label] / len(target_slices))
    return {label: float(np.mean(values)) for label, values in per_axis.items()}
