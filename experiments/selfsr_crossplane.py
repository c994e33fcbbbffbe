"""Self-supervised super-resolution checked against a real second acquisition: the clinical knee's two series.

    .venv/bin/python -m experiments.selfsr_crossplane [--size fast] [--set KEY=VALUE] [--device cpu]
                                                     [--markdown docs/benchmarks.md]

The 1.5 T knee exam in ``../shared/data/knee_clinical_2d`` has a sagittal series (3.3 mm slices 4.29 mm apart) and a
coronal one (3.0 mm, 3.9 mm apart) of one knee in one frame of reference. Each is super-resolved along its slice
axis from itself alone (`mrisr.inference.selfsr.super_resolve`, the slice thickness and gap from its header) and scored,
with interpolations of it, against the other's acquired images (`mrisr.evaluation.crossplane.validate_against`: through
the affines, the other's slice profile applied, the rigid shift measured and corrected, an intensity scale fitted on the
other half of the slices). Rows: nearest, linear, cubic, selfsr, selfsr + DC (back-projection onto the scan).
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd
import torch

from benchmarks.common import publish
from mrisr.data.samples import sample_dir
from mrisr.evaluation.crossplane import validate_against
from mrisr.inference import selfsr
from mrisr.overrides import add_set_option
from mrisr.training.recipes import RECIPES, recipe
from mrisr.io import load_volume
from mrisr.physics.consistency import enforce

SERIES = {"sagittal": "SAG_DP_FS", "coronal": "CORO_DP_FS"}


def run_direction(scan, other, network, device, log=print) -> pd.DataFrame:
    geometry = selfsr.slice_geometry(scan)
    start = time.perf_counter()
    sr = selfsr.super_resolve(scan, size=network, device=device, progress=False)
    seconds = time.perf_counter() - start
    dc = enforce(sr, scan, selfsr.forward_model(geometry), method="back_projection", device=device)
    log(f"{scan.meta['series_description']}: {scan.shape} -> {sr.shape} in {seconds:.0f} s")
    table = validate_against(scan, other, {"selfsr": sr, "selfsr + DC": dc}, log=log)
    table.attrs["seconds"] = seconds
    return table


def markdown(tables: dict[str, pd.DataFrame]) -> str:
    lines = ["| scan -> scored against | method | PSNR (dB) | SSIM | HFEN | PSNR gain vs cubic [95 % CI] | "
             "HFEN change vs cubic [95 % CI] | verdict |", "|---|---|---|---|---|---|---|---|"]
    for direction, table in tables.items():
        for method, r in table.iterrows():
            lines.append(f"| {direction} | {method} | {r.psnr_db:.2f} | {r.ssim:.4f} | {r.hfen:.4f} | "
                         f"{r.psnr_db_gain:+.3f} [{r.psnr_db_low:+.3f}, {r.psnr_db_high:+.3f}] | "
                         f"{r.hfen_gain:+.4f} [{r.hfen_low:+.4f}, {r.hfen_high:+.4f}] | {r.verdict} |")
    notes = [f"{d}: rigid shift {[round(v, 2) for v in t.attrs['shift_mm']]} mm, residual "
             f"{[round(v, 2) for v in t.attrs['residual_shift_mm']]} mm; {t.iloc[0].slices} slices scored; "
             f"selfsr {t.attrs['seconds']:.0f} s" for d, t in tables.items()]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_set_option(parser, "a field of that recipe")
    parser.add_argument("--size", choices=list(RECIPES["selfsr"]), default="full" if torch.cuda.is_available()
                        else "fast")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--exam", help="folder holding the two series (default: the sample knee_clinical_2d)")
    parser.add_argument("--markdown", help="append the table to this Markdown file (e.g. docs/benchmarks.md)")
    args = parser.parse_args(argv)
    folder = sample_dir() / "knee_clinical_2d" if args.exam is None else args.exam
    scans = {name: load_volume(f"{folder}/{series}") for name, series in SERIES.items()}
    start = time.perf_counter()
    network = recipe("selfsr", args.size, **dict(args.set))
    tables = {"sagittal -> coronal": run_direction(scans["sagittal"], scans["coronal"], network, args.device),
              "coronal -> sagittal": run_direction(scans["coronal"], scans["sagittal"], network, args.device)}
    publish(f"Self-supervised SR against a real second acquisition (clinical knee), size {args.size}",
            args.device, time.perf_counter() - start, "python -m experiments.selfsr_crossplane", argv,
            "Each series super-resolved from itself, scored against the other series' acquired images on their "
            "foreground (mrisr.evaluation.crossplane); gains per acquired slice, circular block bootstrap intervals.",
            markdown(tables), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
