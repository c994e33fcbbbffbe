"""The thick-slice study: a scan made thick, super-resolved back by `mrisr.inference.selfsr` and by every classical
baseline.

``factor`` neighbouring slices of a reference are averaged into one (`SliceThickness`, a rect slice profile), after a
new realisation of the reference's own noise is added (`RicianNoise`, the level in ``meta["noise_sigma"]``: measure
it on the whole scan, `mrisr.imaging.noise.with_noise_sigma`, before cropping). The thick scan alone is super-resolved
onto the reference's slice grid (SMORE: Zhao et al., "SMORE: a self-supervised anti-aliasing and super-resolution
algorithm for MRI using deep learning", IEEE TMI 2021) and scored against the reference on its foreground.

The classical baselines (`mrisr.evaluation.baselines.classical`) are fitted on another case (by default the FAIR knee,
another subject, at SNR `FAIR_SNR`), never on the reference. Gains are per 2D plane that contains the super-resolved
axis (the (slice, column) planes, one per row), with a circular block bootstrap interval (`bootstrap_interval`), and a
verdict (`verdict`) over the best classical baseline. Notebook 05 and ``experiments/selfsr.py`` both run this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrisr.data.cases import crop_to_multiple
from mrisr.data.samples import FAIR_SNR, fair_knee
from mrisr.evaluation.baselines import classical, fit_baselines
from mrisr.evaluation.tables import bootstrap_interval, score_table, slice_scores, verdict
from mrisr.imaging.foreground import foreground_mask
from mrisr.inference import selfsr
from mrisr.physics.consistency import enforce
from mrisr.physics.degrade import Degradation, RicianNoise, SliceThickness
from mrisr.training.config import ExperimentConfig
from mrisr.volume import Volume

REFERENCE = "cubic"  # the gains columns are over cubic interpolation of the thick scan
SELF_SUPERVISED = "self-supervised"
GAIN_COLUMNS = ("psnr_db", "ssim", "hfen")
PLANE_AXIS = 1  # gains per (slice, column) plane: planes that contain the super-resolved slice axis


@dataclass
class ThickSliceStudy:
    """What `thick_slice_study` made: ``table`` (one row per method: PSNR, SSIM, HFEN of the volume; per-plane gains
    over cubic and over the best classical baseline, with intervals and a verdict), ``methods`` (name -> `Volume` on
    the reference's grid), the ``reference`` they are scored against (``hr`` cropped to a multiple of the factor along
    the slices), the ``thick`` scan and the baselines' ``fitted`` settings."""
    table: pd.DataFrame
    methods: dict[str, Volume]
    reference: Volume
    thick: Volume
    fitted: dict


def thick_degradation(factor: int, snr: float | None = None) -> Degradation:
    """Noise (a new realisation of the scan's own, or at ``snr``), then ``factor`` slices averaged into one."""
    return Degradation([RicianNoise() if snr is None else RicianNoise(snr), SliceThickness(factor)],
                       name=f"thick slices x{factor}")


def through_plane_images(hr: Volume) -> dict[str, Volume]:
    """The reference's own through-plane images, (slice, row) and (slice, column), laid out as
    `mrisr.inference.selfsr.training_volumes` lays out the scan's in-plane images: the targets of a supervised
    oracle."""
    s, r, c = hr.spacing
    return {"rows": Volume.from_spacing(np.ascontiguousarray(hr.data.transpose(2, 0, 1)), (c, s, r)),
            "columns": Volume.from_spacing(np.ascontiguousarray(hr.data.transpose(1, 0, 2)), (r, s, c))}


def thick_slice_study(hr: Volume, factor: int, size: str | ExperimentConfig = "fast", device=None,
                      fitting_cases: dict[str, Volume] | None = None, fitting_snr: float | None = None,
                      quick_baselines: bool = False, fusion_ablation: bool = False, oracle: bool = False,
                      snr: float | None = None, peers: dict | None = None, seed: int = 0,
                      log=print) -> ThickSliceStudy:
    """Make ``hr`` (a `Volume` with ``meta["noise_sigma"]``, axis 0 the slices) ``factor`` times thicker and compare
    `mrisr.inference.selfsr` with every classical baseline on it. ``size``: selfsr's network and schedule (a size of
    ``RECIPES["selfsr"]``, or a recipe).

    ``fitting_cases``: the references the baselines are fitted on (name -> `Volume`; default the FAIR knee), degraded
    at ``fitting_snr`` (default `mrisr.data.samples.FAIR_SNR` for the FAIR knee; ``None`` with your own cases: their own
    ``noise_sigma``). ``quick_baselines``: one setting per baseline (smoke runs). ``fusion_ablation`` adds each
    orientation alone and their plain mean; ``oracle`` the same network trained on the reference's own through-plane
    images (an upper bound: it sees the answer). ``snr``: noise at this SNR instead of the scan's own level (a scan
    whose air is blanked). ``peers``: other methods, name -> ``f(thick, reference, seconds)`` returning
    ``(estimate on the reference's grid, seconds)``, given the self-supervised method's seconds (a time budget to
    match). ``seed``: the noise realisation."""
    if snr is None and "noise_sigma" not in hr.meta:
        raise ValueError("thick_slice_study needs the reference's noise level in meta['noise_sigma']: measure it on "
                         "the whole scan first (mrisr.imaging.noise.with_noise_sigma), then crop")
    hr = crop_to_multiple(hr, (factor, 1, 1))
    spec = thick_degradation(factor, snr)
    thick = spec(hr, seed=seed)
    if fitting_cases is None:
        fitting_cases, fitting_snr = {"FAIR knee": fair_knee()}, FAIR_SNR if fitting_snr is None else fitting_snr
    fitting_spec = spec if fitting_snr is None or snr is not None else spec.at_snr(fitting_snr)
    fitted = fit_baselines({name: crop_to_multiple(v, (factor, 1, 1)) for name, v in fitting_cases.items()},
                           fitting_spec, quick=quick_baselines)
    geometry = selfsr.slice_geometry(thick, target_spacing=hr.spacing[0])
    start = time.perf_counter()
    model = selfsr.train_network(thick, geometry, size, device, progress=False)
    trained = time.perf_counter() - start
    grid, estimates = selfsr.through_plane_estimates(model, thick, geometry, progress=False)
    methods = classical(thick, hr, spec, fitted)
    methods["bicubic (network input)"] = grid
    methods[SELF_SUPERVISED] = grid.with_data(selfsr.fourier_burst_accumulation(estimates).cpu().numpy())
    seconds = {SELF_SUPERVISED: time.perf_counter() - start}
    if fusion_ablation:
        for name, estimate in zip(selfsr.ORIENTATIONS, estimates):
            methods[f"  {name} images only"] = grid.with_data(estimate.cpu().numpy())
        methods["  mean of both (no FBA)"] = grid.with_data(estimates.mean(0).cpu().numpy())
    if oracle:
        begin = time.perf_counter()
        truth = selfsr.train_network(thick, geometry, size, device, progress=False, images=through_plane_images(hr))
        _, oracle_estimates = selfsr.through_plane_estimates(truth, thick, geometry, progress=False)
        methods["supervised oracle"] = grid.with_data(
            selfsr.fourier_burst_accumulation(oracle_estimates).cpu().numpy())
        seconds["supervised oracle"] = time.perf_counter() - begin
    for name, peer in (peers or {}).items():
        methods[name], seconds[name] = peer(thick, hr, seconds[SELF_SUPERVISED])
    begin = time.perf_counter()
    methods[SELF_SUPERVISED + " + DC"] = enforce(methods[SELF_SUPERVISED], thick, selfsr.forward_model(geometry),
                                                 method="back_projection", device=device)  # stopped at the noise
    seconds[SELF_SUPERVISED + " + DC"] = seconds[SELF_SUPERVISED] + time.perf_counter() - begin
    log(f"x{factor}: {thick.shape} -> {hr.shape}, trained in {trained:.0f} s, applied in "
        f"{seconds[SELF_SUPERVISED] - trained:.0f} s; best classical on {', '.join(fitted['fitted_on'])}: "
        f"{fitted['best']}")
    return ThickSliceStudy(_table(methods, hr, factor, geometry, fitted["best"], seconds), methods, hr, thick, fitted)


def _table(methods: dict[str, Volume], hr: Volume, factor: int, geometry, best: str, seconds: dict) -> pd.DataFrame:
    mask = foreground_mask(hr)
    volume_scores = score_table(methods, hr, mask=mask).xs("foreground", level="region")
    planes = {name: slice_scores(volume, hr, mask=mask, axis=PLANE_AXIS) for name, volume in methods.items()}
    rows = []
    for method, scores in planes.items():
        row = {"factor": factor, "thickness_mm": geometry.slice_thickness, "method": method,
               "seconds": seconds.get(method), **volume_scores.loc[method, list(GAIN_COLUMNS)].to_dict(),
               "planes": len(scores)}
        gains = scores - planes[REFERENCE]
        for column in GAIN_COLUMNS:
            row[column + "_gain"], row[column + "_low"], row[column + "_high"], _ = bootstrap_interval(gains[column])
        mean, low, high, _ = bootstrap_interval((scores - planes[best])["psnr_db"])
        row.update(best=best, best_gain=mean, best_low=low, best_high=high,
                   verdict="(the best classical)" if method == best else verdict(low, high))
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_lines(table: pd.DataFrame) -> list[str]:
    """One sentence per self-supervised row of a study's table: its PSNR gain over the best classical baseline,
    the interval and the verdict (`mrisr.evaluation.tables.verdict`)."""
    return [f"x{r.factor} ({r.thickness_mm:.1f} mm): {r.method} is {r.verdict} against the best classical baseline "
            f"({r.best}): PSNR {r.best_gain:+.3f} dB [95 % CI {r.best_low:+.3f}, {r.best_high:+.3f}] over "
            f"{r.planes} planes; over cubic {r.psnr_db_gain:+.3f} dB, HFEN change {r.hfen_gain:+.4f}"
            for r in table.itertuples() if r.method.startswith(SELF_SUPERVISED)]
