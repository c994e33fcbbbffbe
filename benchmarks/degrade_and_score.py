"""Time each degradation preset and each metric on a whole real volume (CPU by default, CUDA with --device cuda).

    .venv/bin/python -m benchmarks.degrade_and_score [PATH] [--device cpu|cuda] [--repeats 3]

PATH defaults to ../shared/data/knee_dess_sample (80 x 512 x 512). Prints one Markdown table row per operation:
median wall time over the repeats (CUDA timings synchronise first).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from benchmarks.common import time_steps
from mrisr import load_volume
from mrisr.imaging import metrics
from mrisr.imaging.foreground import foreground_mask
from mrisr.physics.degrade import PRESETS, preset


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after one warm-up call (allocations, CUDA context)."""
    return statistics.median(time_steps(fn, torch.device(device), warmup=1, repeats=repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared/data/knee_dess_sample"
    parser.add_argument("path", nargs="?", default=str(default))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    volume = load_volume(args.path)
    hr = torch.from_numpy(volume.data).to(args.device)
    pe = tuple(volume.meta.get("phase_encoding_axes", (0, 1)))
    print(f"{volume.data.shape} volume from {args.path}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print("| operation | median time |\n|---|---|")
    for name in PRESETS:
        spec = preset(name)
        seconds = timed(lambda spec=spec: spec(hr, spacing=volume.spacing[3 - spec.ndim:],
                                                  phase_encoding_axes=pe if spec.ndim == 3 else None),
                        args.device, args.repeats)
        print(f"| degrade `{name}` | {seconds:.3f} s |")
    lr = preset("knee_fast_acquisition")(hr, phase_encoding_axes=pe)
    mask = torch.from_numpy(foreground_mask(volume)).to(args.device)
    data_range = float(hr.max() - hr.min())
    for label, fn in {"psnr": lambda: metrics.psnr(lr, hr, data_range, mask),
                      "ssim (3D)": lambda: metrics.ssim(lr, hr, data_range, mask),
                      "nrmse": lambda: metrics.nrmse(lr, hr, mask),
                      "hfen (3D)": lambda: metrics.hfen(lr, hr, mask)}.items():
        print(f"| {label}, foreground mask | {timed(fn, args.device, args.repeats):.3f} s |")


if __name__ == "__main__":
    main()
