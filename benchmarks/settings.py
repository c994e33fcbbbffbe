"""The speed benchmark's variants (ways of running one network) and sizes (`SIZES`: ``gpu``, ``cpu``, ``tiny``)."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from mrisr.training.device import cudnn_autotuning


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

    def updated(self, settings: dict) -> BenchSizes:
        """These sizes with ``settings`` (field -> value, from ``--set``) replaced; lists become tuples."""
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"unknown benchmark sizes {unknown}; known: {', '.join(known)}")
        return dataclasses.replace(self, **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})


SIZES = {
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


def _autocast(variant: Variant, device: torch.device):
    return torch.autocast(device.type, torch.bfloat16, enabled=variant.precision == "bf16")
