"""Self-supervised super-resolution (`mrisr.inference.selfsr`, SMORE) on the real DESS knee, against interpolation.

    .venv/bin/python -m experiments.selfsr --size fast|thorough|full [--set KEY=VALUE] [--factors 3 4]
                                          [--crop S R C] [--device cuda] [--markdown docs/benchmarks.md]

The DESS knee (1.5 mm slices, 0.3125 mm in-plane) is made thick: ``factor`` slices averaged into one
(`SliceThickness`: 4.5 mm at x3, 6 mm at x4). The thick scan alone is super-resolved back onto the 1.5 mm grid
(``target_spacing=1.5``) and scored against the original, on the foreground. ``--crop`` takes a centred block first
(the CPU check of the issue: ``--crop 48 192 192``); without it, the whole knee.

The study itself is `mrisr.evaluation.thick_slices.thick_slice_study` (notebook 05 runs the same): the thick scan
carries a new realisation of the knee's own noise (measured on the whole knee). Rows: every classical baseline
(`mrisr.evaluation.baselines.classical`: nearest, linear and cubic from the thick scan, each + data consistency,
TV-POCS; settings fitted on the FAIR knee, another subject, never on the DESS), bicubic (the network's own input),
self-supervised (the two orientations fused by Fourier burst accumulation), the fusion ablation (each orientation
alone; their plain mean) and self-supervised + DC (back-projection onto the thick scan); with ``--oracle``, the same
network trained on true pairs, the reference's own through-plane images (an upper bound that no user has: it sees
the answer). Columns: seconds (training plus application), PSNR, SSIM and HFEN of the volume (3D), and the gain over
cubic of PSNR, SSIM and HFEN per 2D plane, mean with a 95 % interval (a circular block bootstrap over the
(slice, column) planes, one per row, which contain the super-resolved axis), and the PSNR gain over the best
classical baseline (the best on the FAIR knee) with its verdict (`mrisr.evaluation.tables.verdict`).
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd
import torch

from benchmarks.common import publish
from mrisr.data.cases import sub_volume
from mrisr.data.samples import sample_dir
from mrisr.evaluation.thick_slices import REFERENCE, thick_slice_study
from mrisr.imaging.noise import with_noise_sigma
from mrisr.io import load_volume
from mrisr.overrides import add_set_option
from mrisr.training.recipes import RECIPES, recipe


def centred_crop(volume, size):
    for axis, n in enumerate(size):
        start = max(0, (volume.shape[axis] - n) // 2)
        volume = sub_volume(volume, axis, start, min(volume.shape[axis], start + n))
    return volume


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


BRAIN = "brain_t1_iso/studyforrest_t1w_0.7mm.nii.gz"
BRAIN_SNR = 30.0  # its air is blanked (mrisr.imaging.noise refuses it): noise at a stated SNR


def load_reference(scan: str, crop=None, dess=None):
    """``(reference, snr)``: the isotropic brain (noise at `BRAIN_SNR`) or the DESS knee (``dess``, default the
    sample; its own noise level measured on the whole knee, ``snr`` None), then a centred ``crop`` (voxels)."""
    if scan == "brain":
        hr, snr = load_volume(sample_dir() / BRAIN), BRAIN_SNR
    elif scan == "dess":
        hr, snr = with_noise_sigma(load_volume(dess or sample_dir() / "knee_dess_sample")), None
    else:
        raise ValueError(f"scan must be 'brain' or 'dess', got {scan!r}")
    return (centred_crop(hr, crop) if crop else hr), snr


def eclare_peers(env: str, log=print) -> dict:
    """ECLARE at the self-supervised method's time and at 4x it (`experiments.eclare_peer`), the true rect profile."""
    from experiments.eclare_peer import ensure_environment, patches_for, run_eclare

    python = ensure_environment(env)
    budget = {}

    def at(multiple):
        def peer(thick, hr, seconds):
            if "patches" not in budget:
                budget["patches"] = patches_for(python, thick, hr, seconds, 1.0, log=log)
            return run_eclare(python, thick, hr, budget["patches"] * multiple, 1.0, log=log)
        return peer
    return {"ECLARE (matched time)": at(1), "ECLARE (4x time)": at(4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(RECIPES["selfsr"]), default="full" if torch.cuda.is_available()
                        else "fast", help="selfsr's recipe (mrisr.training.recipes)")
    add_set_option(parser, "a field of that recipe")
    parser.add_argument("--factors", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--crop", type=int, nargs=3, metavar=("S", "R", "C"), help="a centred block (voxels)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--oracle", action="store_true", help="add the supervised oracle (trained on the reference)")
    parser.add_argument("--scan", choices=["dess", "brain"], default="dess",
                        help="the DESS knee (its own noise) or the isotropic brain (noise at SNR 30)")
    parser.add_argument("--dess", help="the DESS DICOM folder (default: the sample, mrisr.data.samples.sample_dir)")
    parser.add_argument("--eclare", metavar="ENV", help="add ECLARE rows at matched and 4x time, from (or making) "
                        "its own environment in ENV (experiments/eclare_peer.py)")
    parser.add_argument("--markdown", help="append the table to this Markdown file (e.g. docs/benchmarks.md)")
    args = parser.parse_args(argv)
    hr, snr = load_reference(args.scan, args.crop, args.dess)
    what = "the isotropic brain" if args.scan == "brain" else "DESS"
    peers = eclare_peers(args.eclare) if args.eclare else None
    start = time.perf_counter()
    network = recipe("selfsr", args.size, **dict(args.set))
    tables = [thick_slice_study(hr, factor, network, args.device, fusion_ablation=True, oracle=args.oracle,
                                snr=snr, peers=peers).table for factor in args.factors]
    noise = (f"the scan's own noise (sigma {hr.meta['noise_sigma']:.0f})" if snr is None else
             f"noise at SNR {snr:g} (its air is blanked)")
    publish(f"Self-supervised super-resolution of thick-slice {what}, size {args.size}"
            + (f" with {dict(args.set)}" if args.set else ""), args.device,
            time.perf_counter() - start, "python -m experiments.selfsr", argv,
            f"Reference: {what} {hr.shape} at {hr.spacing[0]:.3g} mm slices; thick slices with a new realisation of "
            f"{noise}; classical baselines fitted on the FAIR knee (another subject, noise at SNR 30), never on the "
            "reference; scores on the foreground; gains per (slice, column) plane, intervals by a circular block "
            "bootstrap over the planes.", markdown(pd.concat(tables, ignore_index=True)), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
