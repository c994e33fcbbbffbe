"""Speed benchmark: training and whole-volume inference of the seed-size EDSR3D, variant by variant (`run`).

The result is a JSON-ready dict with these sections (`to_markdown` turns it into the tables of docs/benchmarks.md):

* ``environment``: device, torch / CUDA / cuDNN versions, date, the sizes used.
* ``peak``: the device's own matrix-product rate in bf16 and fp32 (an n x n x n ``torch.matmul``), the yardstick of
  model FLOP utilisation: MFU = model FLOP/s / the faster of the two (bf16 on a GPU).
* ``train``: one optimiser step (forward, MSE, backward, Adam) on random patches already on the device, for each
  `Variant`, then batch- and patch-size sweeps with the fastest: patches/s, voxels/s, TFLOP/s (model FLOPs counted
  by ``torch.utils.flop_counter``), MFU, peak memory.
* ``pipeline``: the real loop, `mrisr.train.sr_learner` fitting phantom subjects through fastai: patches/s, the data
  loader's own time per batch, and the device's busy fraction (the compute-only step time of the same settings over
  the real step time). The first row uses the library's defaults.
* ``inference``: `mrisr.inference.predict_volume` of a random volume (256 x 320 x 320 on a GPU), per variant and
  per tile size: seconds, input voxels/s, peak memory.
* ``accuracy``: each variant's `predict_volume` of a degraded real (or phantom) volume against the fp32 result: the
  relative error ``||v - fp32|| / ||fp32||`` and the change in PSNR against the original, in dB. The network is the
  benchmark's, trained for a few fp32 steps on that volume so that its output differs from its input.

Timing (as in MONAI's and PyTorch's own benchmarks): warm-up calls first (cuDNN autotuning, compilation, the
allocator), then the median over repeats, each a run of several steps bracketed by CUDA events (on the CPU
``time.perf_counter``), so the host may run ahead of the device as in real training.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mrisr.device import (channels_last_format, cudnn_autotuning, default_device, is_out_of_memory,
                          padded_input_channels, speed_settings)
from mrisr.inference import predict_volume
from mrisr.models import EDSR3D, count_parameters
from mrisr.volume import Volume, intensity_scale


@dataclass(frozen=True)
class Variant:
    """One way of running the same network: ``precision`` ``"fp32"`` (strict: no TF32 anywhere), ``"tf32"``
    (fp32 tensors, TF32 matrix units) or ``"bf16"`` (autocast); channels-last memory format; cuDNN autotuning;
    ``torch.compile``."""

    name: str
    precision: str = "fp32"
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False


NAIVE = Variant("naive fp32")
GPU_VARIANTS = (
    NAIVE,
    Variant("tf32", "tf32"),
    Variant("bf16 autocast", "bf16"),
    Variant("bf16 + channels_last_3d", "bf16", channels_last=True),
    Variant("bf16 + cudnn.benchmark", "bf16", cudnn_benchmark=True),
    Variant("bf16 + channels_last_3d + cudnn.benchmark", "bf16", True, True),
    Variant("bf16 + channels_last_3d + cudnn.benchmark + compile", "bf16", True, True, True),
)
CPU_VARIANTS = (
    NAIVE,
    Variant("fp32 + channels_last_3d", channels_last=True),
    Variant("bf16 autocast", "bf16"),
    Variant("bf16 + channels_last_3d", "bf16", channels_last=True),
    Variant("fp32 + compile", compile=True),
)


@dataclass
class BenchSizes:
    """What one run measures. Sizes in voxels; ``volume`` is (slice, row, column). Inference runs first with the
    tiling `predict_volume` chooses, then with each activation budget in ``memory_gb`` (GiB) and each fixed tile
    side in ``tiles``. ``matmul_n``: side of the matrix products that measure the peak."""

    n_feats: int = 64
    n_blocks: int = 9
    patch: int = 32
    batch: int = 16
    warmup: int = 3
    repeats: int = 5
    steps_per_repeat: int = 5
    batch_sweep: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    patch_sweep: tuple[int, ...] = (24, 32, 48, 64)
    variants: str = "gpu"
    compile: bool = True
    matmul_n: int = 8192
    pipeline_subjects: int = 4
    pipeline_shape: tuple[int, ...] = (96, 160, 160)
    pipeline_batches: int = 48
    pipeline_batch_sizes: tuple[int, ...] = (64, 128)
    volume: tuple[int, ...] = (256, 320, 320)
    tiles: tuple[int, ...] = (192,)
    memory_gb: tuple[float, ...] = (12.0, 8.0, 4.0)
    inference_repeats: int = 2
    accuracy_shape: tuple[int, ...] = (80, 256, 256)
    accuracy_steps: int = 200
    accuracy_batch: int = 8


PRESETS = {
    "gpu": BenchSizes(),
    "cpu": BenchSizes(batch=2, warmup=1, repeats=3, steps_per_repeat=1, batch_sweep=(1, 4), patch_sweep=(16, 48),
                      variants="cpu", matmul_n=2048, pipeline_subjects=3, pipeline_shape=(48, 96, 96),
                      pipeline_batches=4, pipeline_batch_sizes=(), volume=(32, 64, 64), tiles=(), memory_gb=(),
                      inference_repeats=1, accuracy_shape=(16, 64, 64), accuracy_steps=10, accuracy_batch=2),
    "tiny": BenchSizes(n_feats=4, n_blocks=1, patch=12, batch=2, warmup=1, repeats=2, steps_per_repeat=1,
                       batch_sweep=(1,), patch_sweep=(16,), variants="cpu", compile=False, matmul_n=256,
                       pipeline_subjects=3, pipeline_shape=(24, 32, 32), pipeline_batches=2,
                       pipeline_batch_sizes=(), volume=(12, 24, 24), tiles=(16,), memory_gb=(),
                       inference_repeats=1, accuracy_shape=(12, 24, 24), accuracy_steps=2, accuracy_batch=1),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- timing -------------------------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, repeats: int,
               steps_per_repeat: int = 1) -> list[float]:
    """Seconds per call of ``step``, one figure per repeat (each the mean over ``steps_per_repeat`` calls), after
    ``warmup`` untimed calls. CUDA work is bracketed by events; take the median."""
    for _ in range(warmup):
        step()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps_per_repeat):
                step()
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1e3 / steps_per_repeat)
        else:
            begin = time.perf_counter()
            for _ in range(steps_per_repeat):
                step()
            seconds.append((time.perf_counter() - begin) / steps_per_repeat)
    return seconds


@contextmanager
def backend(variant: Variant):
    """The global flags a variant needs (TF32 on or off for matrix products and convolutions, cuDNN autotuning),
    restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = variant.precision == "tf32"
    try:
        with cudnn_autotuning(variant.cudnn_benchmark):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def peak_memory_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# -- the yardstick ------------------------------------------------------------------------------------------------

def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """Measured FLOP/s of an ``n x n x n`` matrix product of random ``dtype`` matrices (2 n^3 FLOP each)."""
    generator = torch.Generator(device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=generator) for _ in range(2))
    with backend(NAIVE):
        seconds = time_steps(lambda: a @ b, device, warmup=2, repeats=repeats)
    return 2 * n**3 / float(np.median(seconds))


def step_flops(model: torch.nn.Module, shape: Sequence[int], device: torch.device) -> int:
    """Model FLOPs of one training step (forward and backward) on a batch of ``shape``, counted by
    ``torch.utils.flop_counter`` (convolutions and matrix products; the optimiser's element-wise work is not
    counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, *shape[1:], device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() * shape[0]


# -- training -----------------------------------------------------------------------------------------------------

def _autocast(variant: Variant, device: torch.device):
    return torch.autocast(device.type, torch.bfloat16, enabled=variant.precision == "bf16")


def train_step(model: torch.nn.Module, variant: Variant, batch: int, patch: int,
               device: torch.device) -> Callable[[], None]:
    """A training step of ``model`` (moved to ``device`` in the variant's memory format) on fixed random patches
    ``(batch, 1, patch, patch, patch)``: forward under the variant's autocast, MSE, backward, Adam."""
    memory_format = channels_last_format(3) if variant.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    net = torch.compile(model) if variant.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    generator = torch.Generator(device).manual_seed(0)
    x = torch.rand(batch, 1, patch, patch, patch, device=device, generator=generator)
    x = x.contiguous(memory_format=memory_format)
    y = x + 0.01 * torch.randn(x.shape, device=device, generator=generator)

    def step():
        with _autocast(variant, device), padded_input_channels(model, enabled=variant.channels_last):
            loss = F.mse_loss(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure_train(sizes: BenchSizes, variant: Variant, device: torch.device, batch: int, patch: int,
                  flops: int, peak: float) -> dict:
    """One row of the training table: the variant's step at ``batch`` patches of ``patch`` voxels a side."""
    reset_peak_memory(device)
    torch.manual_seed(0)
    model = EDSR3D(n_feats=sizes.n_feats, n_blocks=sizes.n_blocks)
    begin = time.perf_counter()
    with backend(variant):
        step = train_step(model, variant, batch, patch, device)
        step()  # first call: compilation, autotuning
        synchronize(device)
        first = time.perf_counter() - begin
        seconds = float(np.median(time_steps(step, device, sizes.warmup, sizes.repeats, sizes.steps_per_repeat)))
    row = {"variant": variant.name, "batch": batch, "patch": patch, "step_ms": round(seconds * 1e3, 3),
           "patches_per_s": round(batch / seconds, 1), "voxels_per_s": round(batch * patch**3 / seconds),
           "tflops": round(flops / seconds / 1e12, 3), "mfu": round(flops / seconds / peak, 4),
           "peak_memory_gib": peak_memory_gib(device), "first_step_s": round(first, 2)}
    log(f"train {variant.name} batch {batch} patch {patch}: {row['patches_per_s']} patches/s, MFU {row['mfu']:.1%}")
    return row


def kernel_profile(step: Callable[[], None], device: torch.device, steps: int = 3, top: int = 12) -> list[dict]:
    """Where the device time of ``step`` goes: the ``top`` CUDA kernels by total time (``torch.profiler``), each
    with its milliseconds per step and share of the device time."""
    from torch.profiler import ProfilerActivity, profile

    step()
    synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    timed = [(e.key, getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0), e.count)
             for e in prof.key_averages()]
    total = sum(t for _, t, _ in timed) or 1
    timed.sort(key=lambda k: -k[1])
    return [{"kernel": name[:120], "ms_per_step": round(t / 1e3 / steps, 3), "share": round(t / total, 4),
             "calls_per_step": count // steps} for name, t, count in timed[:top]]


def train_section(sizes: BenchSizes, variants: Sequence[Variant], device: torch.device, peak: float) -> dict:
    """Every variant at the default batch and patch, then batch and patch sweeps with the fastest."""
    model = EDSR3D(n_feats=sizes.n_feats, n_blocks=sizes.n_blocks).to(device)
    flops_per_voxel = step_flops(model, (1, 1, 16, 16, 16), device) / 16**3  # convolutions: linear in the voxels
    flops = round(flops_per_voxel * sizes.batch * sizes.patch**3)
    rows = []
    for variant in variants:
        try:
            rows.append(measure_train(sizes, variant, device, sizes.batch, sizes.patch, flops, peak))
        except Exception as err:  # noqa: BLE001 (a variant that fails, e.g. compile without a compiler, is reported)
            rows.append({"variant": variant.name, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"})
            log(f"train {variant.name}: failed ({rows[-1]['error']})")
    timed = [r for r in rows if "error" not in r]
    naive = next(r for r in timed if r["variant"] == NAIVE.name)
    for r in timed:
        r["speedup"] = round(naive["step_ms"] / r["step_ms"], 2)
    best = min(timed, key=lambda r: r["step_ms"])
    best_variant = next(v for v in variants if v.name == best["variant"])
    # sweeps run eager (compiling every shape takes too long); the compiled best is measured at the best batch after
    sweep_variant = best_variant
    if best_variant.compile:
        sweep_variant = dataclasses.replace(best_variant, compile=False,
                                            name=best_variant.name.replace(" + compile", ""))
    sweeps = []

    def sweep(variant: Variant, batch: int, patch: int) -> None:
        try:
            sweeps.append(measure_train(sizes, variant, device, batch, patch,
                                        round(flops_per_voxel * batch * patch**3), peak))
        except Exception as err:  # noqa: BLE001
            if not is_out_of_memory(err):
                raise
            sweeps.append({"variant": variant.name, "batch": batch, "patch": patch, "error": "out of memory"})

    for batch, patch in [(b, sizes.patch) for b in sizes.batch_sweep] + [(sizes.batch, p) for p in sizes.patch_sweep]:
        sweep(sweep_variant, batch, patch)
    if best_variant.compile:
        fastest = max((r for r in sweeps if "error" not in r and r["patch"] == sizes.patch),
                      key=lambda r: r["patches_per_s"])
        if fastest["batch"] != sizes.batch:
            sweep(best_variant, fastest["batch"], sizes.patch)
    result = {"flops_per_voxel": round(flops_per_voxel), "variants": rows, "best": best["variant"],
              "speedup_best_over_naive": best["speedup"], "sweep_variant": sweep_variant.name, "sweeps": sweeps}
    if device.type == "cuda":
        try:
            with backend(sweep_variant):
                torch.manual_seed(0)
                step = train_step(EDSR3D(n_feats=sizes.n_feats, n_blocks=sizes.n_blocks), sweep_variant, sizes.batch,
                                  sizes.patch, device)
                result["profile"] = kernel_profile(step, device)
        except Exception as err:  # noqa: BLE001 (the profiler is not available everywhere)
            result["profile_error"] = f"{type(err).__name__}: {err}"
    return result


# -- the real training loop --------------------------------------------------------------------------------------

def pipeline_section(sizes: BenchSizes, device: torch.device, settings: Sequence[dict]) -> list[dict]:
    """`sr_learner` fitting phantom subjects (two epochs; the second is timed), once per entry of ``settings``
    (`ExperimentConfig` speed fields; ``{}`` = the library's defaults)."""
    from fastai.callback.core import Callback

    from mrisr.data import prepare_subject
    from mrisr.phantom import knee_phantom
    from mrisr.train import ExperimentConfig, sr_learner

    class TrainPhaseTimer(Callback):
        def before_train(self):
            synchronize(device)
            self.begin, self.patches, self.batches = time.perf_counter(), 0, 0

        def after_batch(self):
            if self.training:
                self.patches += self.yb[0].shape[0]
                self.batches += 1

        def after_train(self):
            synchronize(device)
            self.seconds = time.perf_counter() - self.begin

    subjects = [prepare_subject(knee_phantom(sizes.pipeline_shape, seed=s), None, f"phantom{s}")
                for s in range(sizes.pipeline_subjects)]
    per_subject = math.ceil(sizes.pipeline_batches * sizes.batch / (len(subjects) - 1))
    rows = []
    for extra in settings:
        extra = dict(extra)
        device_smooth_loss = extra.pop("device_smooth_loss", True)  # a FastPath option, not a config field
        with tempfile.TemporaryDirectory() as run_dir:
            batch = extra.get("batch_size", sizes.batch)
            config = ExperimentConfig(**{"name": "bench", "n_feats": sizes.n_feats, "n_blocks": sizes.n_blocks,
                                         "patch_size": sizes.patch, "batch_size": batch,
                                         "patches_per_subject": math.ceil(per_subject * batch / sizes.batch),
                                         "valid_patches_per_subject": batch, "valid_cases": [subjects[-1].name],
                                         "epochs": 2, "run_dir": run_dir, **extra})
            learn = sr_learner(config, subjects, device=device, progress=False)
            learn.logger = lambda *_: None
            learn.fast_path.device_smooth_loss = device_smooth_loss
            timer = TrainPhaseTimer()
            learn.fit(2, 1e-4, cbs=[timer])
            synchronize(device)
            begin = time.perf_counter()
            n_batches = sum(1 for _ in learn.dls.train)
            synchronize(device)
            loader_s = (time.perf_counter() - begin) / n_batches
        step_s = timer.seconds / timer.batches
        precision = speed_settings("train", device, mixed_precision=config.mixed_precision)["mixed_precision"]
        fast = learn.fast_path
        same = Variant("same settings, compute only", precision, fast.channels_last, fast.cudnn_benchmark,
                       config.compile)
        compute_s = measure_train(sizes, same, device, batch, sizes.patch, flops=0, peak=1.0)["step_ms"] / 1e3
        rows.append({"settings": extra or "defaults", "batch": batch,
                     "num_workers": learn.dls.train.fake_l.num_workers,
                     "channels_last": fast.channels_last, "cudnn_benchmark": fast.cudnn_benchmark,
                     "patches_per_s": round(timer.patches / timer.seconds, 1),
                     "step_ms": round(step_s * 1e3, 2), "loader_ms_per_batch": round(loader_s * 1e3, 2),
                     "compute_ms_per_step": round(compute_s * 1e3, 2),
                     "device_busy": round(min(1.0, compute_s / step_s), 3)})
        log(f"pipeline {rows[-1]['settings']}: {rows[-1]['patches_per_s']} patches/s, "
            f"busy {rows[-1]['device_busy']:.0%}")
    return rows


# -- inference ----------------------------------------------------------------------------------------------------

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


# -- accuracy -----------------------------------------------------------------------------------------------------

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
    from mrisr.cases import sub_volume
    from mrisr.degrade import preset
    from mrisr.metrics import psnr

    start = [max(0, (n - a) // 2) for n, a in zip(volume.shape, sizes.accuracy_shape)]
    for axis, (b, a) in enumerate(zip(start, sizes.accuracy_shape)):  # the central block, at most accuracy_shape
        volume = sub_volume(volume, axis, b, b + a)
    degraded = preset("knee_fast_acquisition")(volume).data
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


# -- one run ------------------------------------------------------------------------------------------------------

SECTIONS = ("train", "pipeline", "inference", "accuracy")


def device_name(device: str | torch.device) -> str:
    """What a benchmark ran on, in words: the GPU's name, or the CPU's cores and torch threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def environment(device: torch.device, sizes: BenchSizes, preset_name: str) -> dict:
    cuda = device.type == "cuda"
    return {"device": device_name(device),
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "preset": preset_name, "sizes": dataclasses.asdict(sizes),
            "model": f"EDSR3D {sizes.n_feats}x{sizes.n_blocks} "
                     f"({count_parameters(EDSR3D(n_feats=sizes.n_feats, n_blocks=sizes.n_blocks)):,} parameters)"}


def run(preset_name: str = "auto", device: str | torch.device | None = None, volume: Volume | None = None,
        sections: Sequence[str] = SECTIONS, on_section: Callable[[dict], None] | None = None) -> dict:
    """Measure everything in ``sections`` on ``device`` (default: CUDA when available) with the ``preset_name``
    sizes (``"auto"``: ``"gpu"`` on CUDA, ``"cpu"`` elsewhere; ``"tiny"`` for tests). ``volume`` is the real scan the
    accuracy section degrades and predicts (default: a phantom). ``on_section(result so far)`` is called after
    each section (to save partial results of a long run)."""
    device = default_device(device)
    if preset_name == "auto":
        preset_name = "gpu" if device.type == "cuda" else "cpu"
    if preset_name not in PRESETS:
        raise ValueError(f"preset must be 'auto' or one of {list(PRESETS)}, got {preset_name!r}")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    sizes = PRESETS[preset_name]
    variants = [v for v in (GPU_VARIANTS if sizes.variants == "gpu" else CPU_VARIANTS) if sizes.compile or not
                v.compile]
    result: dict = {"environment": environment(device, sizes, preset_name)}
    log(f"{result['environment']['device']}, torch {torch.__version__}, preset {preset_name}")
    # n^3 products; bf16 on a CPU without bf16 units takes seconds per product, so it is timed at n <= 1024 there
    sides = {"bf16": sizes.matmul_n if device.type == "cuda" else min(sizes.matmul_n, 1024), "fp32": sizes.matmul_n}
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    rates = {k: matmul_rate(device, dtypes[k], n) for k, n in sides.items()}
    peak_name = max(rates, key=rates.get)
    if device.type == "cpu" and rates["bf16"] < rates["fp32"]:  # no bf16 matrix units: bf16 steps take minutes
        result["skipped"] = [f"{v.name}: bf16 matrix products run at {rates['bf16'] / 1e9:.1f} GFLOP/s here, slower "
                             f"than fp32 ({rates['fp32'] / 1e9:.1f})" for v in variants if v.precision == "bf16"]
        variants = [v for v in variants if v.precision != "bf16"]
    result["peak"] = {**{f"{k}_tflops": round(v / 1e12, 2) for k, v in rates.items()},
                      **{f"{k}_n": n for k, n in sides.items()}, "mfu_against": peak_name}
    log("matrix-product peak: " + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in rates.items()))
    done = on_section or (lambda _: None)
    if "train" in sections:
        result["train"] = train_section(sizes, variants, device, rates[peak_name])
        done(result)
    # predict_volume runs eager (tiles change shape) and autocasts on CUDA only
    predicting = [v for v in variants if not v.compile and (device.type == "cuda" or v.precision == "fp32")]
    if "inference" in sections:
        result["inference"] = inference_section(sizes, predicting, device)
        done(result)
    if "pipeline" in sections:
        workers = min(8, max(1, (os.cpu_count() or 2) - 1))
        settings = [{}, {"num_workers": workers}] + [{"batch_size": b} for b in sizes.pipeline_batch_sizes]
        if sizes.compile and sizes.pipeline_batch_sizes:
            settings.append({"batch_size": max(sizes.pipeline_batch_sizes), "compile": True})
        result["pipeline"] = pipeline_section(sizes, device, settings)
        done(result)
    if "accuracy" in sections:
        if volume is None:
            from mrisr.phantom import knee_phantom

            volume = knee_phantom(sizes.accuracy_shape)
        result["accuracy"] = accuracy_section(sizes, predicting, device, volume)
    return result


# -- report -------------------------------------------------------------------------------------------------------

def markdown_table(rows: Sequence[dict], columns: dict[str, str]) -> str:
    """A Markdown table of ``rows`` with ``columns`` (key -> header); failed rows show their error."""
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [r.get(k, "") for k in columns]
        if "error" in r:
            cells = [r.get(k, "") if k in ("variant", "batch", "patch", "tile", "memory_gb", "settings") else ""
                     for k in columns]
            cells[-1] = r["error"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value else f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def as_percent(rows: Sequence[dict], key: str) -> list[dict]:
    return [{**r, key: f"{r[key]:.1%}"} if key in r else r for r in rows]


def to_markdown(result: dict, command: str = "mrisr bench") -> str:
    """The run as Markdown: a heading with device, versions and date, then one table per section."""
    env = result["environment"]
    versions = f"torch {env['torch']}" + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}" if env["cuda"] else "")
    out = [f"### Speed benchmark: {env['device']}, {env['date']}", "",
           f"`{command}` (preset `{env['preset']}`); {versions}; {env['model']}."]
    if result.get("skipped"):
        out.append("Not measured: " + "; ".join(result["skipped"]) + ".")
    if "peak" in result:
        peak = result["peak"]
        out.append(f"Matrix-product peak measured here: bf16 {peak['bf16_tflops']} TFLOP/s ({peak['bf16_n']}^3), "
                   f"fp32 {peak['fp32_tflops']} TFLOP/s ({peak['fp32_n']}^3); MFU is against {peak['mfu_against']}.")
    if "train" in result:
        train = result["train"]
        sizes = env["sizes"]
        out += ["", f"Training step, compute only (random {sizes['patch']}^3 patches on the device, batch "
                    f"{sizes['batch']}; {train['flops_per_voxel'] / 1e6:.1f} MFLOP per voxel forward+backward). "
                    f"Fastest: **{train['best']}**, {train['speedup_best_over_naive']}x the naive loop.", "",
                markdown_table(as_percent(train["variants"], "mfu"),
                       {"variant": "variant", "step_ms": "step ms", "patches_per_s": "patches/s",
                        "voxels_per_s": "voxels/s", "tflops": "TFLOP/s", "mfu": "MFU",
                        "peak_memory_gib": "peak GiB", "first_step_s": "first step s", "speedup": "vs naive"}),
                "", f"Batch and patch sweeps ({train['sweep_variant']}):", "",
                markdown_table(as_percent(train["sweeps"], "mfu"),
                       {"variant": "variant", "batch": "batch", "patch": "patch", "step_ms": "step ms",
                        "patches_per_s": "patches/s", "voxels_per_s": "voxels/s", "mfu": "MFU",
                        "peak_memory_gib": "peak GiB"})]
    if result.get("train", {}).get("profile"):
        out += ["", f"Where a training step's device time goes ({result['train']['sweep_variant']}, torch.profiler):",
                "", markdown_table(as_percent(result["train"]["profile"], "share"),
                           {"kernel": "kernel", "calls_per_step": "calls/step", "ms_per_step": "ms/step",
                            "share": "share"})]
    if "pipeline" in result:
        out += ["", "The real training loop (`sr_learner` on phantom subjects, fastai, the second epoch's training "
                    "phase); device busy = compute-only step / real step:", "",
                markdown_table(as_percent(result["pipeline"], "device_busy"),
                       {"settings": "settings", "batch": "batch", "num_workers": "workers",
                        "patches_per_s": "patches/s", "step_ms": "step ms", "loader_ms_per_batch": "loader ms/batch",
                        "compute_ms_per_step": "compute ms/step", "device_busy": "device busy"})]
    if "inference" in result:
        out += ["", f"Whole-volume inference, `predict_volume` of a {' x '.join(map(str, env['sizes']['volume']))} "
                    "volume (median of repeats after a warm-up; halo = receptive field, exact):", "",
                markdown_table(result["inference"], {"variant": "variant", "tile": "tile", "memory_gb": "budget GiB",
                                             "tile_used": "tile used", "seconds": "seconds",
                                             "voxels_per_s": "voxels/s", "peak_memory_gib": "peak GiB",
                                             "speedup": "vs naive"})]
    if "accuracy" in result:
        acc = result["accuracy"]
        out += ["", f"Accuracy against fp32 on `{acc['volume']}` {tuple(acc['shape'])} (degraded: "
                    f"{acc['input_psnr_db']} dB; fp32 network: {acc['fp32_psnr_db']} dB):", "",
                markdown_table(acc["variants"], {"variant": "variant", "relative_error": "relative error",
                                         "psnr_change_db": "PSNR change dB"})]
    return "\n".join(out) + "\n"


def publish(title: str, device, seconds: float, script: str, argv: list[str] | None, notes: str, table: str,
            markdown=None) -> str:
    """Print a benchmark's result as a Markdown section (title, date, device, torch, run time, the command that made
    it, ``notes``, then ``table``) and, when ``markdown`` names a file, append it there. Returns the section."""
    command = " ".join([script, *(argv if argv is not None else sys.argv[1:])])
    text = (f"### {title} ({time.strftime('%Y-%m-%d')})\n\nDevice: {device_name(device)}; torch {torch.__version__}; "
            f"{seconds / 60:.1f} min in all. Command: `{command}`. {notes}\n\n{table}")
    print(text)
    if markdown:
        append_markdown(markdown, text)
        print(f"appended to {markdown}")
    return text


def append_markdown(path, text: str):
    """Append ``text`` to the Markdown file ``path`` (created if missing) without ever leaving it half-written."""
    from pathlib import Path

    from mrisr.io.atomic import atomic_path

    path = Path(path)
    before = path.read_text() if path.exists() else ""
    with atomic_path(path, path.suffix or ".md") as tmp:
        tmp.write_text(before + ("\n" if before and not before.endswith("\n\n") else "") + text)
    return path
