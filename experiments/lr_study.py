"""Which peak learning rate does each network size want, and does `lr_find` know it?

    .venv/bin/python experiments/lr_study.py [--sizes 16x2 32x4] [--lrs 3e-4 1e-3 3e-3] [--epochs 4] [--device cpu]

On the DESS slabs of `experiments/real_knee.py` (slabs 1-2 train, slab 3 validates; `knee_fast_acquisition`), for
each network size ``FEATURESxBLOCKS`` of EDSR3D: `lr_find`'s four suggestions (valley, slide, minimum, steep), then a
short one-cycle fit at each peak lr, with the last epoch's validation `gain_db` (dB over the degraded input on the
validation patches). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from fastai.callback.schedule import minimum, slide, steep, valley

from mrisr.data.samples import knee_slabs
from mrisr.overrides import add_set_option
from mrisr.training.config import ExperimentConfig
from mrisr.training.train import fit, sr_learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["16x2"])
    parser.add_argument("--lrs", nargs="+", type=float, default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--patches", type=int, default=160, help="training patches per subject per epoch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / f"mrisr-lr-study-{os.getuid()}"))
    add_set_option(parser, "an ExperimentConfig field of every run")
    args = parser.parse_args()
    slabs = knee_slabs(Path(args.out) / "slabs", n=4, columns=192)
    print("| EDSR3D | lr_find valley | slide | minimum | steep | " + " | ".join(f"gain_db at {lr:g}" for lr in args.lrs)
          + " |\n|---|---|---|---|---|" + "---|" * len(args.lrs))
    for size in args.sizes:
        n_feats, n_blocks = map(int, size.split("x"))

        def config(lr):
            return ExperimentConfig(name="lr", train_paths=[str(p) for p in slabs[:2]], valid_paths=[str(slabs[2])],
                                    n_feats=n_feats, n_blocks=n_blocks, patch_size=24,
                                    patches_per_epoch=2 * args.patches, valid_patches_per_subject=32, batch_size=8,
                                    epochs=args.epochs, lr_max=lr,
                                    run_dir=str(Path(args.out) / size)).updated(dict(args.set))

        start = time.perf_counter()
        torch.manual_seed(0)
        learn = sr_learner(config(None), device=args.device, progress=False)
        found = learn.lr_find(suggest_funcs=(valley, slide, minimum, steep), show_plot=False, num_it=100)
        gains = []
        for lr in args.lrs:
            torch.manual_seed(0)
            learn = sr_learner(config(lr), device=args.device, progress=False)
            fit(learn, config(lr))
            gains.append(learn.recorder.values[-1][learn.recorder.metric_names.index("gain_db") - 1])
        print(f"| {size} | " + " | ".join(f"{v:.2e}" for v in found) + " | "
              + " | ".join(f"{g:+.3f}" for g in gains) + f" |  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
