"""Data-parallel training speed: patches/s of the real fastai loop on 1, 2 and 4 processes, and the scaling
efficiency (patches/s on N processes / (N x patches/s on 1)). Each run is ``torchrun`` of this module as a worker.

    .venv/bin/python -m benchmarks.distributed                           # CPU, tiny model: 1, 2, 4 processes (gloo)
    .venv/bin/python -m benchmarks.distributed --device cuda --nproc 1 2  # GPUs: one process per GPU (NCCL)

The batch per process is fixed, so N processes train N times the patches per step. The second epoch's training
phase is timed on process 0, between barriers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from fastai.callback.core import Callback

from benchmarks.common import markdown_table
from mrisr.data.phantom import knee_phantom
from mrisr.data.pipeline import prepare_subject
from mrisr.training.config import ExperimentConfig
from mrisr.training.distributed import barrier, is_writer, world_size
from mrisr.training.train import sr_learner


class TrainTimer(Callback):
    """Seconds and patches of the last training phase, all processes together."""

    def before_train(self):
        barrier()
        self.begin, self.patches = time.perf_counter(), 0

    def after_batch(self):
        if self.training:
            self.patches += self.yb[0].shape[0] * world_size()

    def after_train(self):
        if self.xb[0].is_cuda:
            torch.cuda.synchronize()
        barrier()
        self.seconds = time.perf_counter() - self.begin


def worker(out: Path, device: str, n_feats: int, batch: int, patches: int) -> None:
    subjects = [prepare_subject(knee_phantom((32, 64, 64), seed=s), None, f"phantom{s}") for s in range(3)]
    with tempfile.TemporaryDirectory() as run_dir:
        config = ExperimentConfig(name="distributed", n_feats=n_feats, n_blocks=2, patch_size=16, batch_size=batch,
                                  patches_per_epoch=2 * patches, valid_patches_per_subject=batch * 2,
                                  epochs=2, lr_max=1e-4, run_dir=run_dir)
        learn = sr_learner(config, subjects, device=device, progress=False, valid_names=["phantom2"])
        learn.logger = lambda *_: None
        timer = TrainTimer()
        learn.fit(2, 1e-4, cbs=[timer])
    if is_writer():
        out.write_text(json.dumps({"patches": timer.patches, "seconds": timer.seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-feats", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="patches per process per step")
    parser.add_argument("--patches", type=int, default=64, help="training patches per subject per epoch")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(Path(args.worker), args.device, args.n_feats, args.batch, args.patches)
    rows = []
    for n in args.nproc:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "result.json"
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--standalone",
                            "-m", "benchmarks.distributed", "--worker", str(out), "--device", args.device,
                            "--n-feats", str(args.n_feats), "--batch", str(args.batch), "--patches",
                            str(args.patches)], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                           stderr=subprocess.DEVNULL)
            result = json.loads(out.read_text())
        rate = result["patches"] / result["seconds"]
        rows.append({"processes": n, "effective_batch": args.batch * n, "patches_per_s": round(rate, 1),
                     "efficiency": f"{rate / (n * rows[0]['patches_per_s']):.0%}" if rows else "100%"})
        print(rows[-1], flush=True)
    print(markdown_table(rows, {"processes": "processes", "effective_batch": "effective batch",
                                "patches_per_s": "patches/s", "efficiency": "scaling efficiency"}))


if __name__ == "__main__":
    main()
