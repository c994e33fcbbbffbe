"""The real training loop (`sr_learner`, fastai) with and without `mrisr.training.callbacks.DeviceSmoothLoss`; prints a
table.

    python -m benchmarks.training_loop                      # GPU: batch 16 and 64
    python -m benchmarks.training_loop --batch-sizes 2 --size tiny

fastai copies its smoothed training loss to the CPU after every step, so the host waits for the GPU and only then
cuts the next batch; `DeviceSmoothLoss` (the default, through `mrisr.training.callbacks.FastPath`) keeps it on the
device. Device busy = the compute-only step time of the same settings over the real step time
(`benchmarks.speed_train.pipeline_section`).
"""

import argparse
import dataclasses
import json

import torch

from benchmarks.common import as_percent, markdown_table
from benchmarks.settings import SIZES
from benchmarks.speed import environment
from benchmarks.speed_train import pipeline_section
from mrisr.overrides import add_set_option


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="auto", choices=["auto", *SIZES])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--json", help="also write the rows to this file")
    add_set_option(parser, "a field of the sizes (benchmarks.settings.BenchSizes)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = args.size if args.size != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    sizes = SIZES[size].updated(dict(args.set))
    rows = []
    for device_loss in (False, True):
        for row in pipeline_section(dataclasses.replace(sizes, pipeline_subjects=3), device,
                                          [{"batch_size": b, "device_smooth_loss": device_loss}
                                           for b in args.batch_sizes]):
            rows.append({"device_loss": device_loss, **row})
    print(markdown_table(as_percent(rows, "device_busy"),
                       {"device_loss": "device loss", "batch": "batch", "cudnn_benchmark": "cudnn.benchmark",
                        "patches_per_s": "patches/s", "step_ms": "step ms", "loader_ms_per_batch": "loader ms/batch",
                        "compute_ms_per_step": "compute ms/step", "device_busy": "device busy"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": environment(device, sizes, "pipeline")["device"], "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
