"""Self-supervised super-resolution (`mrisr.selfsr`, SMORE) on the real DESS knee, against interpolation.

    .venv/bin/python -m benchmarks.selfsr --preset fast|full [--factors 3 4] [--crop S R C] [--device cuda]
                                          [--markdown docs/benchmarks.md]

The DESS knee (1.5 mm slices, 0.3125 mm in-plane) is made thick: ``factor`` slices averaged into one
(`SliceThickness`: 4.5 mm at x3, 6 mm at x4). The thick scan alone is super-resolved back onto the 1.5 mm grid
(``target_spacing=1.5``) and scored against the original, on the foreground. ``--crop`` takes a centred block first
(the CPU check of the issue: ``--crop 48 192 192``); without it, the whole knee.

The thick scan carries a new realisation of the knee's own noise (`RicianNoise`, measured on the whole knee). Rows:
every classical baseline (`mrisr.baselines.classical`: nearest, linear and cubic from the thick scan, each + data
consistency, TV-POCS; settings fitted on the FAIR knee, another subject, never on the DESS), bicubic (the network's own
input, `mrisr.selfsr.upsample_slices`), self-supervised (the two orientations fused by Fourier burst accumulation),
the fusion ablation (each orientation alone; their plain mean) and self-supervised + DC (back-projection onto the
thick scan); with ``--oracle``, the same network trained on true pairs, the reference's own through-plane images
(an upper bound that no user has: it sees the answer). Columns: seconds (training plus application), PSNR, SSIM and HFEN of the volume (3D), and the gain over
cubic of PSNR, SSIM and HFEN per 2D slice, mean with a 95 % interval (a moving-block bootstrap over the slices, the
(slice, column) planes, one per row, which contain the super-resolved axis), and the PSNR gain over the best
classical baseline (the best on the FAIR knee) with its verdict (`mrisr.evaluate.verdict`).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch

from mrisr.baselines import classical, fit_baselines
from mrisr.consistency import enforce
from mrisr.cases import crop_to_multiple, sub_volume
from mrisr.degrade import Degradation, RicianNoise, SliceThickness
from mrisr.evaluate import bootstrap_interval, score_table, slice_scores, verdict
from mrisr.foreground import foreground_mask
from benchmarks.common import publish
from mrisr.io import load_volume
from mrisr.volume import Volume
from mrisr.noise import with_noise_sigma
from mrisr.samples import FAIR_SNR, fair_knee, sample_dir
from mrisr import selfsr

REFERENCE = "cubic"
GAIN_COLUMNS = ("psnr_db", "ssim", "hfen")


def centred_crop(volume, size):
    for axis, n in enumerate(size):
        start = max(0, (volume.shape[axis] - n) // 2)
        volume = sub_volume(volume, axis, start, min(volume.shape[axis], start + n))
    return volume


def through_plane_images(hr) -> dict:
    """The reference's own through-plane images, (slice, row) and (slice, column), laid out as
    `mrisr.selfsr.training_volumes` lays out the scan's in-plane images: the targets of a supervised oracle."""
    s, r, c = hr.spacing
    return {"rows": Volume.from_spacing(np.ascontiguousarray(hr.data.transpose(2, 0, 1)), (c, s, r)),
            "columns": Volume.from_spacing(np.ascontiguousarray(hr.data.transpose(1, 0, 2)), (r, s, c))}


def run_factor(hr, factor: int, preset: str, device: str, oracle: bool = False, log=print) -> list[dict]:
    """The rows of one thick-slice factor."""
    hr = crop_to_multiple(hr, (factor, 1, 1))
    spec = Degradation([RicianNoise(), SliceThickness(factor)], name=f"thick slices x{factor}")
    thick = spec(hr, seed=0)  # with a new realisation of the scan's own noise (measured on the whole knee)
    fitted = fit_baselines({"FAIR knee": crop_to_multiple(fair_knee(), (factor, 1, 1))}, spec.at_snr(FAIR_SNR))
    geometry = selfsr.slice_geometry(thick, target_spacing=hr.spacing[0])
    start = time.perf_counter()
    model = selfsr.train_network(thick, geometry, preset, device, progress=False)
    trained = time.perf_counter() - start
    grid, estimates = selfsr.through_plane_estimates(model, thick, geometry, progress=False)
    fused = selfsr.fourier_burst_accumulation(estimates).cpu().numpy()
    seconds = time.perf_counter() - start
    methods = classical(thick, hr, spec, fitted)
    methods["bicubic (network input)"] = grid
    methods["self-supervised"] = grid.with_data(fused)
    for name, estimate in zip(selfsr.ORIENTATIONS, estimates):
        methods[f"  {name} images only"] = grid.with_data(estimate.cpu().numpy())
    methods["  mean of both (no FBA)"] = grid.with_data(estimates.mean(0).cpu().numpy())
    if oracle:  # the same network trained on true pairs cut from the reference itself: what perfect pairs give
        start = time.perf_counter()
        model = selfsr.train_network(thick, geometry, preset, device, progress=False, images=through_plane_images(hr))
        _, estimates = selfsr.through_plane_estimates(model, thick, geometry, progress=False)
        methods["supervised oracle"] = grid.with_data(selfsr.fourier_burst_accumulation(estimates).cpu().numpy())
        oracle_seconds = time.perf_counter() - start
    dc_start = time.perf_counter()
    methods["self-supervised + DC"] = enforce(methods["self-supervised"], thick, selfsr.forward_model(geometry),
                                              method="back_projection", device=device)  # stopped at the noise
    dc_seconds = time.perf_counter() - dc_start
    mask = foreground_mask(hr)
    table = score_table(methods, hr, mask=mask).xs("foreground", level="region")
    best = fitted["best"]
    reference = slice_scores(methods[REFERENCE], hr, mask=mask, axis=1)
    strongest = slice_scores(methods[best], hr, mask=mask, axis=1)
    rows = []
    for method in methods:
        scores = slice_scores(methods[method], hr, mask=mask, axis=1)
        gains = scores - reference
        row = {"factor": factor, "thickness_mm": geometry.slice_thickness, "method": method,
               "seconds": {"self-supervised": seconds, "self-supervised + DC": seconds + dc_seconds,
                           "supervised oracle": oracle_seconds if oracle else None}.get(method),
               **table.loc[method, ["psnr_db", "ssim", "hfen"]].to_dict(), "slices": len(gains)}
        for column in GAIN_COLUMNS:
            row[column + "_gain"], row[column + "_low"], row[column + "_high"], _ = bootstrap_interval(gains[column])
        over_best = bootstrap_interval((scores - strongest)["psnr_db"])
        row.update(best=best, best_gain=over_best[0], best_low=over_best[1], best_high=over_best[2],
                   verdict="(the best classical)" if method == best else verdict(*over_best[1:3]))
        rows.append(row)
    log(f"x{factor}: {thick.shape} -> {hr.shape}, trained in {trained:.0f} s, applied in {seconds - trained:.0f} s")
    return rows


def markdown(table: pd.DataFrame) -> str:
    lines = ["| factor | method | time (s) | PSNR (dB) | SSIM | HFEN | PSNR gain vs cubic [95 % CI] | "
             "SSIM gain | HFEN change (lower is better) | PSNR gain vs the best classical [95 % CI] | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        cells = []
        for column, digits in (("psnr_db", 3), ("ssim", 4), ("hfen", 4)):
            cells.append("-" if r["method"] == REFERENCE else
                         f"{r[column + '_gain']:+.{digits}f} [{r[column + '_low']:+.{digits}f}, "
                         f"{r[column + '_high']:+.{digits}f}]")
        seconds = "-" if pd.isna(r["seconds"]) else f"{r['seconds']:.0f}"
        versus = (f"{r['best_gain']:+.3f} [{r['best_low']:+.3f}, {r['best_high']:+.3f}] vs {r['best']}"
                  if r["method"] != r["best"] else "-")
        lines.append(f"| x{r['factor']} ({r['thickness_mm']:.1f} mm) | {r['method']} | {seconds} | "
                     f"{r['psnr_db']:.2f} | {r['ssim']:.4f} | {r['hfen']:.4f} | " + " | ".join(cells)
                     + f" | {versus} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(selfsr.SETTINGS), default="full" if torch.cuda.is_available()
                        else "fast")
    parser.add_argument("--factors", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--crop", type=int, nargs=3, metavar=("S", "R", "C"), help="a centred block (voxels)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--oracle", action="store_true", help="add the supervised oracle (trained on the reference)")
    parser.add_argument("--dess", help="the DESS DICOM folder (default: the sample, mrisr.samples.sample_dir)")
    parser.add_argument("--markdown", help="append the table to this Markdown file (e.g. docs/benchmarks.md)")
    args = parser.parse_args(argv)
    hr = with_noise_sigma(load_volume(args.dess or sample_dir() / "knee_dess_sample"))  # on the whole knee
    if args.crop:
        hr = centred_crop(hr, args.crop)
    start = time.perf_counter()
    rows = []
    for factor in args.factors:
        rows += run_factor(hr, factor, args.preset, args.device, args.oracle)
    publish(f"Self-supervised super-resolution of thick-slice DESS, preset {args.preset}", args.device,
            time.perf_counter() - start, "python -m benchmarks.selfsr", argv,
            f"Reference: DESS {hr.shape} at 1.5 mm slices; thick slices with a new realisation of the scan's own noise "
            f"(sigma {hr.meta['noise_sigma']:.0f}); classical baselines fitted on the FAIR knee (another subject, "
            "noise at SNR 30), never on the DESS; scores on the foreground; gains per (slice, column) plane, "
            "intervals by a moving-block bootstrap over the planes.",
            markdown(pd.DataFrame(rows)), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
