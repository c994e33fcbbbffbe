"""The speed benchmark's inference sections: `predict_volume` per variant and tile (`inference_section`), and each
variant's accuracy against fp32 on a degraded scan (`accuracy_section`)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import log, peak_memory_gib, reset_peak_memory
from benchmarks.settings import NAIVE, BenchSizes, Variant, backend
from mrisr.inference.tiled import predict_volume
from mrisr.networks.models import EDSR3D
from mrisr.volume import Volume, intensity_scale


def _predict(model, volume, variant: Variant, device: torch.device, **kwargs):
    with backend(variant):
        return predict_volume(model, volume, device=device, dtype="bf16" if variant.precision == "bf16" else "fp32",
                              channels_last=variant.channels_last, cudnn_benchmark=variant.cudnn_benchmark, **kwargs)


def inference_section(sizes: BenchSizes, variants: Sequence[Variant], device: torch.device) -> list[dict]:
    """`predict_volume` of a random ``sizes.volume`` with the seed-size network (random weights: speed does not
    depend on them), per variant at the default tiling, then per tile size and memory budget with the fastest."""
    torch.manual_seed(0)
    model = EDSR3D(n_feats=sizes.n_feats, n_blocks=sizes.n_blocks)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    volume = Volume(np.random.default_rng(0).random(sizes.volume, dtype=np.float32), np.eye(4))

    def row(variant: Variant, tile, memory_gb) -> dict:
        reset_peak_memory(device)
        run = lambda: _predict(model, volume, variant, device, tile_size=tile, memory_gb=memory_gb)  # noqa: E731
        run()  # warm-up: cuDNN autotuning for this tile shape, the allocator
        reset_peak_memory(device)
        seconds = []
        for _ in range(sizes.inference_repeats):
            begin = time.perf_counter()
            out = run()
            seconds.append(time.perf_counter() - begin)
        median = float(np.median(seconds))
        result = {"variant": variant.name, "tile": tile or "auto", "memory_gb": memory_gb or "auto",
                  "tile_used": out.meta["super_resolution"]["tile"], "seconds": round(median, 3),
                  "voxels_per_s": round(volume.data.size / median), "peak_memory_gib": peak_memory_gib(device)}
        log(f"inference {variant.name} tile {result['tile']} budget {result['memory_gb']}: {median:.3f} s, "
            f"peak {result['peak_memory_gib']} GiB")
        return result

    def attempt(variant: Variant, tile, memory_gb) -> dict:
        try:
            return row(variant, tile, memory_gb)
        except Exception as err:  # noqa: BLE001 (reported in the table, e.g. out of memory)
            log(f"inference {variant.name} tile {tile} budget {memory_gb}: failed ({err})")
            return {"variant": variant.name, "tile": tile or "auto", "memory_gb": memory_gb or "auto",
                    "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}

    rows = [attempt(v, None, None) for v in variants]
    timed = [r for r in rows if "error" not in r]
    for r in timed:
        r["speedup"] = round(timed[0]["seconds"] / r["seconds"], 2) if timed[0]["variant"] == NAIVE.name else None
    best = next(v for v in variants if v.name == min(timed, key=lambda r: r["seconds"])["variant"])
    rows += [attempt(best, None, m) for m in sizes.memory_gb]
    rows += [attempt(best, t, None) for t in sizes.tiles]
    return rows


def fit_briefly(model: torch.nn.Module, lr_volume: np.ndarray, hr_volume: np.ndarray, steps: int, batch: int,
                patch: int, device: torch.device, seed: int = 0) -> torch.nn.Module:
    """A few fp32 Adam steps on random paired patches (normalised by the input's `intensity_scale`), so that the
    network computes something other than its input (its last conv starts at zero)."""
    scale = intensity_scale(lr_volume)
    lr_t = torch.from_numpy(np.ascontiguousarray(lr_volume, np.float32) / scale).to(device)
    hr_t = torch.from_numpy(np.ascontiguousarray(hr_volume, np.float32) / scale).to(device)
    size = [min(patch, n) for n in lr_t.shape]
    rng = np.random.default_rng(seed)
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with backend(NAIVE):
        for _ in range(steps):
            starts = [[int(rng.integers(n - s + 1)) for n, s in zip(lr_t.shape, size)] for _ in range(batch)]
            crop = lambda t: torch.stack([t[tuple(slice(b, b + s) for b, s in zip(st, size))] for st in starts])  # noqa: E731
            loss = F.mse_loss(model(crop(lr_t)[:, None]), crop(hr_t)[:, None])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy_section(sizes: BenchSizes, variants: Sequence[Variant], device: torch.device, volume: Volume) -> dict:
    """Each variant's whole-volume prediction of the degraded ``volume`` (its central ``sizes.accuracy_shape``
    block) against the fp32 one."""
    from mrisr.data.cases import sub_volume
    from mrisr.imaging.metrics import psnr
    from mrisr.physics.degrade import preset

    start = [max(0, (n - a) // 2) for n, a in zip(volume.shape, sizes.accuracy_shape)]
    for axis, (b, a) in enumerate(zip(start, sizes.accuracy_shape)):  # the central block, at most accuracy_shape
        volume = sub_volume(volume, axis, b, b + a)
    degraded = preset("knee_fast_acquisition_noise_free")(volume).data  # a speed figure: no noise to measure
    torch.manual_seed(0)
    model = EDSR3D(n_feats=sizes.n_feats, n_blocks=sizes.n_blocks)
    fit_briefly(model, degraded, volume.data, sizes.accuracy_steps, sizes.accuracy_batch, sizes.patch, device)
    data_range = float(volume.data.max() - volume.data.min())
    reference = _predict(model, degraded, NAIVE, device)
    reference_psnr = float(psnr(reference, volume.data, data_range))
    rows = []
    for variant in variants:
        out = reference if variant == NAIVE else _predict(model, degraded, variant, device)
        out_psnr = float(psnr(out, volume.data, data_range))
        rows.append({"variant": variant.name,
                     "relative_error": float(np.linalg.norm(out - reference) / np.linalg.norm(reference)),
                     "psnr_db": round(out_psnr, 4), "psnr_change_db": round(out_psnr - reference_psnr, 4)})
        log(f"accuracy {variant.name}: relative error {rows[-1]['relative_error']:.2e}, "
            f"PSNR change {rows[-1]['psnr_change_db']:+.4f} dB")
    return {"volume": volume.meta.get("source_path", "phantom"), "shape": list(volume.shape),
            "input_psnr_db": round(float(psnr(degraded, volume.data, data_range)), 4),
            "fp32_psnr_db": round(reference_psnr, 4), "variants": rows}
