"""Scores of volumes against a reference, as tables: the numbers every experiment reports.

A score is computed over the image axes of the experiment (``ndim=3`` for the knee; ``ndim=2`` for slice-wise 2D
super-resolution, every slice and frame pooled into one number per volume), on the subject's foreground
(`mrisr.imaging.foreground.foreground_mask`) and on the whole volume.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from mrisr.evaluation.baselines import DC_SUFFIX, SAME_GRID, baselines, classical
from mrisr.imaging import metrics
from mrisr.imaging.foreground import foreground_mask
from mrisr.inference.tiled import predict_volume
from mrisr.io.atomic import atomic_path
from mrisr.networks.losses import as_slices
from mrisr.physics.consistency import consistency_error, enforce
from mrisr.physics.degrade import Degradation
from mrisr.training.distributed import gather
from mrisr.volume import Volume, intensity_scale

COLUMNS = ["psnr_db", "ssim", "nrmse", "hfen"]
CONSISTENCY = "consistency_error"  # ||A(method) - lr|| / ||lr||: how far a method's output is from explaining the scan


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
            keep: bool | list[str] = False, consistency: bool = False, baseline_settings: dict | None = None,
            **predict_options) -> tuple[pd.DataFrame, dict[str, dict[str, Volume]]]:
    """Degrade each high-resolution case, super-resolve it with every model, and score models and baselines.

    Args:
        models: label -> network (`mrisr.networks.models`), run by `mrisr.inference.tiled.predict_volume`.
        cases: subject name -> high-resolution `Volume` (the reference).
        degradation: what made the low-resolution input (the same for every case; ``seed`` per case is fixed).
        keep: keep the volumes (``True``, or a list of subject names) for figures and animations.
        consistency: also score every method made consistent with the input (`mrisr.physics.consistency.enforce`, aware
        of
            the input's recorded noise), as ``"<method>+DC"`` rows of the method's kind: a baseline made consistent
            is a baseline too (for reduced-grid degradations, interpolation followed by back-projection, Irani and
            Peleg 1991).
        baseline_settings: `mrisr.evaluation.baselines.fit_baselines` of validation cases: the baselines are then every
            classical method (`mrisr.evaluation.baselines.classical`: interpolation, interpolation + DC with the fitted
            settings, TV-POCS, Wiener where the degradation ends in a blur); ``None``: interpolation only.
        **predict_options: passed to `predict_volume` (device, dtype, tile_size, ...).

    Several processes (a ``torchrun`` launch): each passes its share of the cases (`mrisr.training.distributed.share`)
    and every process gets the table of all of them, in subject order; ``volumes`` holds this process's cases only.

    Returns:
        ``(table, volumes)``: one row per (subject, method, region) with ``kind`` ``"baseline"`` or ``"model"``, the
        `COLUMNS` scores and `CONSISTENCY` (``||A(output) - input|| / ||input||``, the same for both regions);
        ``volumes[subject]`` maps ``"LR input"``, every method (but the ``"degraded input"`` baseline, which is the
        LR input) and ``"HR"`` to its `Volume`: ready for `mrisr.evaluation.render.animate`.
    """
    tables, volumes = [], {}
    for name, hr in cases.items():
        lr = degradation(hr, seed=seed)
        methods = baselines(lr, hr) if baseline_settings is None else classical(lr, hr, degradation,
                                                                                  baseline_settings)
        kinds = dict.fromkeys(methods, "baseline")
        for label, model in models.items():
            methods[label] = predict_volume(model, lr, **predict_options)
            kinds[label] = "model"
        if consistency:  # every method made consistent; the classical set already holds its fitted +DC rows
            for label in [m for m in methods if baseline_settings is None or kinds[m] == "model"]:
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


def block_length(series: np.ndarray) -> int:
    """Block length (slices) of the block bootstrap of a correlated series: ``n^(1/3) (2 rho / (1 - rho^2))^(2/3)``
    from its lag-1 autocorrelation ``rho`` (the AR(1) rule of Politis and White, Econometric Rev. 2004, with the
    correction of Patton, Politis and White 2009), at least 1 and at most ``n / 2``."""
    x = np.asarray(series, np.float64)
    n = len(x)
    if n < 4:
        return 1
    rho = lag1_autocorrelation(x)
    if rho <= 0:
        return 1
    return int(np.clip(round(n ** (1 / 3) * (2 * rho / (1 - min(rho, 0.99) ** 2)) ** (2 / 3)), 1, n // 2))


def lag1_autocorrelation(series) -> float:
    """Correlation of a series with itself one step on (slices: neighbouring slices)."""
    x = np.asarray(series, np.float64) - np.mean(series)
    return float((x[1:] * x[:-1]).sum() / max((x * x).sum(), 1e-300))


def bootstrap_interval(gains, confidence: float = 0.95, n_boot: int = 4000, block: int | None = None,
                       seed: int = 0) -> tuple[float, float, float, int]:
    """``(mean, low, high, block)``: the mean gain and its ``confidence`` interval over training seeds and slices.

    ``gains`` is ``(seeds, slices)`` (a 1D array is one seed): the gain of a method over a baseline on each slice of
    a test case, for each training seed. Each of ``n_boot`` replicates draws seeds with replacement and one set of
    slice blocks (the circular block bootstrap of Politis and Romano, 1992, which wraps the series so that the end
    slices are drawn as often as the rest: the moving-block bootstrap of Kuensch, Ann. Stat. 1989, under-draws them
    and biases the interval where the ends differ; the same blocks for every seed: slice ``k`` is the same anatomy
    for each), so the interval covers both the spread between trainings and the correlated
    slice-to-slice spread; ``block`` defaults to `block_length` of the seed-mean series. With one seed it covers the
    slices only. Percentile interval; ``nan`` bounds with fewer than two slices.
    """
    g = np.atleast_2d(np.asarray(gains, np.float64))
    seeds, n = g.shape
    mean = float(g.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), 1
    block = block_length(g.mean(0)) if block is None else int(block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_boot, -(-n // block)))  # circular: every slice equally likely
    index = ((starts[..., None] + np.arange(block)) % n).reshape(n_boot, -1)[:, :n]  # (n_boot, n) slice indices
    chosen = rng.integers(0, seeds, size=(n_boot, seeds))  # (n_boot, seeds)
    per_seed_slice_means = g[:, index].mean(-1)  # (seeds, n_boot): each seed's mean over the drawn slices
    replicates = np.take_along_axis(per_seed_slice_means.T, chosen, axis=1).mean(1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return mean, float(low), float(high), block


OUTCOMES = ("better", "not distinguishable", "worse")


def verdict(low: float, high: float, higher_is_better: bool = True) -> str:
    """``"better"`` when the whole interval ``[low, high]`` of a difference (method minus baseline) lies on the good
    side of zero, ``"worse"`` when it lies on the bad side, else ``"not distinguishable"`` (also without an
    interval: ``nan`` bounds)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return OUTCOMES[1]
    if not higher_is_better:
        low, high = -high, -low
    return OUTCOMES[0] if low > 0 else OUTCOMES[2] if high < 0 else OUTCOMES[1]


def gains_over(volumes, baseline: str = LR_LABEL, axis: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """The gain of every method over ``baseline`` on each subject, with an interval over seeds and slices.

    ``volumes`` is what `compare` keeps (subject -> method -> `Volume`, ``HR_LABEL`` the reference, all on one
    grid), or a list of them, one per training seed (the same subjects and baseline in each). Rows ``(subject,
    method)``; columns ``psnr_gain_db`` (mean over seeds and slices along ``axis`` of `slice_gains`), ``ci_low`` /
    ``ci_high`` (its ``confidence`` interval, `bootstrap_interval`: seeds and correlated slices), ``verdict``
    (`verdict` of that interval), ``hfen_change`` with ``hfen_low`` / ``hfen_high`` and ``hfen_verdict`` (negative
    is sharper), ``slices``, ``seeds`` (distinct outputs: a baseline's is the same in every run), ``block`` (the
    bootstrap's block length) and ``rho`` (lag-1 autocorrelation of the per-slice PSNR gain). Volumes off the
    reference grid (a low-resolution input) are left out."""
    runs = [volumes] if isinstance(volumes, dict) else list(volumes)
    rows = []
    for subject, methods in runs[0].items():
        target = methods[HR_LABEL]
        baseline = LR_LABEL if baseline == SAME_GRID else baseline  # `compare` keeps the degraded input as LR
        # `slice_gains` per method, with the reference's mask and range and the baseline's scores computed once
        data_range, mask = float(target.data.max() - target.data.min()), foreground_mask(target)
        base = slice_scores(methods[baseline], target, data_range, mask, axis=axis)
        for method, volume in methods.items():
            if method in (baseline, HR_LABEL) or volume.data.shape != target.data.shape:
                continue
            # the distinct outputs: one per seed for a network, one for a baseline (the same volume in every run)
            distinct = list({id(run[subject][method]): run[subject][method] for run in runs}.values())
            gains = [slice_scores(v, target, data_range, mask, axis=axis) - base for v in distinct]
            psnr = np.stack([g["psnr_db"].to_numpy() for g in gains])
            hfen = np.stack([g["hfen"].to_numpy() for g in gains])
            mean, low, high, block = bootstrap_interval(psnr, confidence)
            h_mean, h_low, h_high, _ = bootstrap_interval(hfen, confidence)
            rows.append({"subject": subject, "method": method, "psnr_gain_db": mean, "ci_low": low, "ci_high": high,
                         "verdict": verdict(low, high), "hfen_change": h_mean, "hfen_low": h_low,
                         "hfen_high": h_high, "hfen_verdict": verdict(h_low, h_high, higher_is_better=False),
                         "slices": psnr.shape[1], "seeds": len(distinct), "block": block,
                         "rho": lag1_autocorrelation(psnr.mean(0))})
    return pd.DataFrame(rows).set_index(["subject", "method"])


SEED = " (seed {})"  # how `compare`'s labels name one training seed of a model


def seed_runs(volumes: dict[str, dict[str, Volume]], seeds) -> list[dict[str, dict[str, Volume]]]:
    """`compare`'s volumes of models trained with several seeds, labelled ``"<model> (seed <k>)"`` (`SEED`; its
    ``+DC`` rows ``"<model> (seed <k>)+DC"``), as one
    run per seed with the seed taken out of the labels (what `gains_over` takes); every other method (baselines,
    input, reference) is in each run."""
    suffixes = [SEED.format(k) for k in seeds]
    runs = []
    for suffix in suffixes:
        runs.append({subject: {m.replace(suffix, ""): v for m, v in methods.items()
                               if suffix in m or not any(x in m for x in suffixes)}
                     for subject, methods in volumes.items()})
    return runs


def gain_lines(gains: pd.DataFrame, baseline: str, confidence: float = 0.95) -> list[str]:
    """One sentence per row of `gains_over`: the method against ``baseline`` on that subject, its verdict by the
    interval, the gain and the interval; the sentences notebooks print."""
    level = int(round(100 * confidence))
    lines = []
    for (subject, method), row in gains.iterrows():
        seeds = f"{row['seeds']} seed{'s' * (row['seeds'] > 1)}"
        lines.append(f"{subject}: {method} against {baseline}: PSNR {row['verdict']} ({row['psnr_gain_db']:+.3f} dB, "
                     f"{level} % CI {row['ci_low']:+.3f} to {row['ci_high']:+.3f}); HFEN {row['hfen_verdict']} "
                     f"({row['hfen_change']:+.4f}, {row['hfen_low']:+.4f} to {row['hfen_high']:+.4f}); "
                     f"{seeds}, {row['slices']} slices, blocks of {row['block']}")
    return lines


def best_baseline(table: pd.DataFrame, region: str = "foreground", metric: str = "psnr_db") -> str:
    """The baseline with the best mean ``metric`` over subjects."""
    rows = table[(table["kind"] == "baseline") & (table["region"] == region)]
    if rows.empty:
        raise ValueError("the table has no baseline rows")
    means = rows.groupby("method")[metric].mean()
    return str(means.idxmax() if HIGHER_IS_BETTER[metric] else means.idxmin())


def summarize(table: pd.DataFrame, region: str = "foreground", confidence: float = 0.95,
              best: str | None = None) -> pd.DataFrame:
    """Summary of a `compare` table over subjects, for one region, against the baseline ``best`` (the best
    classical baseline on validation data, ``fit_baselines(...)["best"]``; ``None``: the best on these cases, which
    flatters the baseline, not the models).

    Rows ``(method, "mean")`` and ``(method, "std")`` for every method; for every model, ``(model, "vs <best>")``:
    the mean paired difference (model minus the best baseline, subject by subject), with ``"ci_low"`` /
    ``"ci_high"`` rows bounding its ``confidence`` interval (Student's t over subjects; ``nan`` with one subject).
    """
    rows = table[table["region"] == region]
    best = best_baseline(table, region) if best is None else best
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


def verdict_lines(summary: pd.DataFrame, metric: str = "psnr_db") -> list[str]:
    """One sentence per model of a `summarize` table: better, not distinguishable or worse than the best baseline
    on ``metric`` (`verdict` of the interval over subjects), by how much. With one subject there is no interval over
    subjects, so no verdict: `gains_over` gives one over seeds and slices."""
    best, level = summary.attrs["best_baseline"], int(round(100 * summary.attrs["confidence"]))
    lines = []
    for method, statistic in summary.index:
        if statistic != f"vs {best}":
            continue
        diff = summary.loc[(method, statistic), metric]
        low, high = summary.loc[(method, "ci_low"), metric], summary.loc[(method, "ci_high"), metric]
        ci = (f"{level} % CI {low:+.3f} to {high:+.3f}" if np.isfinite(low)
              else "one subject: no interval over subjects, see the gains over slices")
        lines.append(f"{method} against the best baseline ({best}): {metric} "
                     f"{verdict(low, high, HIGHER_IS_BETTER[metric])} ({diff:+.3f}; {ci}, "
                     f"n = {summary.attrs['n_subjects']})")
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
            + to_markdown(summary) + "\n" + "\n".join(f"- {line}" for line in verdict_lines(summary))
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
    """VGG16 feature distance (a `mrisr.networks.losses.PerceptualLoss`) of ``pred`` from ``target``: every slice along
    each of the ``ndim`` last axes (one axis: in-plane images only when ``ndim=2``), both divided by the target's
    intensity scale (`mrisr.volume.intensity_scale`), ``chunk`` slices at a time; the mean over slices and axes."""
    return feature_distances({"pred": pred}, target, perceptual, ndim, device, chunk)["pred"]


def feature_distances(preds: dict[str, Volume], target: Volume, perceptual, ndim: int = 3, device="cpu",
                      chunk: int = 16, step: int = 1) -> dict[str, float]:
    """`feature_distance` of each of ``preds`` (label -> `Volume`) from one ``target``, whose VGG features are
    computed once for all of them; over every ``step``-th slice along each axis (1: all)."""
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
            target_slices = as_slices(t, axis)[::step]  # (frames x slices along axis, 1, a, b)
            pred_slices = {label: as_slices(p, axis)[::step] for label, p in ps.items()}
            totals = dict.fromkeys(preds, 0.0)
            for start in range(0, len(target_slices), chunk):
                target_features = perceptual.vgg(target_slices[start:start + chunk].to(device))
                for label, slices in pred_slices.items():
                    a = slices[start:start + chunk].to(device)
                    totals[label] += float(perceptual.feature_loss(perceptual.vgg(a), target_features)) * len(a)
            for label in preds:
                per_axis[label].append(totals[label] / len(target_slices))
    return {label: float(np.mean(values)) for label, values in per_axis.items()}
