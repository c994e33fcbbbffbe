"""The speed benchmark's training sections: one optimiser step per variant with batch and patch sweeps, FLOPs and
MFU against the measured matrix-product peak (`train_section`), and the real fastai loop (`pipeline_section`)."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import log, peak_memory_gib, reset_peak_memory, synchronize, time_steps
from benchmarks.settings import NAIVE, BenchSizes, Variant, _autocast, backend
from mrisr.networks.models import EDSR3D
from mrisr.training.device import channels_last_format, is_out_of_memory, padded_input_channels, speed_settings


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


def pipeline_section(sizes: BenchSizes, device: torch.device, settings: Sequence[dict]) -> list[dict]:
    """`sr_learner` fitting phantom subjects (two epochs; the second is timed), once per entry of ``settings``
    (`ExperimentConfig` speed fields; ``{}`` = the library's defaults)."""
    from fastai.callback.core import Callback

    from mrisr.data.phantom import knee_phantom
    from mrisr.data.pipeline import prepare_subject
    from mrisr.training.config import ExperimentConfig
    from mrisr.training.train import sr_learner

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
                                         "patches_per_epoch": (len(subjects) - 1)  # all but one train
                                         * math.ceil(per_subject * batch / sizes.batch),
                                         "valid_patches_per_subject": batch,
                                         "epochs": 2, "run_dir": run_dir, **extra})
            learn = sr_learner(config, subjects, device=device, progress=False, valid_names=[subjects[-1].name])
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
