"""Time whole-volume inference (`mrisr.inference.tiled.predict_volume`) of the seed-size EDSR3D; prints the figures.

    python benchmarks/predict_volume.py --shape 48 96 96                  # CPU
    python benchmarks/predict_volume.py --shape 256 320 320 --dtype bf16  # GPU: a mridata knee

Weights are random (speed does not depend on them). Throughput counts input voxels; the tiles' halo (the network's
receptive field, 21 voxels per side for the seed-size model) is extra work included in the time.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mrisr.inference.tiled import predict_volume
from mrisr.networks.models import EDSR3D, count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[48, 96, 96], help="volume (slice, row, column)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp16"], help="autocast on CUDA")
    parser.add_argument("--tile-size", type=int, help="tile size (default: from the memory budget)")
    parser.add_argument("--n-feats", type=int, default=64)
    parser.add_argument("--n-blocks", type=int, default=9)
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = EDSR3D(n_feats=args.n_feats, n_blocks=args.n_blocks)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    volume = np.random.default_rng(0).random(args.shape, dtype=np.float32)
    if device.type == "cuda":
        predict_volume(model, volume[:32, :64, :64], device=device, dtype=args.dtype)  # warm-up: cuDNN, allocator
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    predict_volume(model, volume, tile_size=args.tile_size, device=device, dtype=args.dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    figures = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} "
                                                                                    "threads)",
        "model": f"EDSR3D {args.n_feats}x{args.n_blocks} ({count_parameters(model):,} parameters)",
        "shape": args.shape, "dtype": args.dtype or "fp32", "seconds": round(seconds, 3),
        "voxels_per_second": round(volume.size / seconds),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda"
        else None,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
