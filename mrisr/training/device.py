"""Which device a run uses, and how fast it runs there.

The default device (`default_device`); the speed settings measured with ``python -m benchmarks.speed`` (`FAST_PATH`,
docs/benchmarks.md); cuDNN autotuning; the channels-last memory format; zero-padded input channels for the first
convolution; and out-of-memory detection. A speed setting of ``None`` means one thing everywhere: the measured
choice on CUDA, off on the CPU (`speed_settings`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

FAST_PATH = {
    "predict": {"dtype": "bf16", "channels_last": True, "cudnn_benchmark": False},
    "train": {"mixed_precision": "bf16", "channels_last": True, "cudnn_benchmark": True, "num_workers": 0},
}
"""What ``None`` becomes on CUDA: for `mrisr.inference.tiled.predict_volume`, the fastest settings within 0.01 dB of
fp32; for training (`mrisr.training.config.ExperimentConfig`), the fastest step with the data loader keeping up."""
OFF = {"dtype": "fp32", "mixed_precision": "fp32", "channels_last": False, "cudnn_benchmark": False, "num_workers": 0}
"""What ``None`` becomes on the CPU."""


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None``: CUDA where there is a GPU, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def speed_settings(job: str, device: torch.device, **chosen) -> dict:
    """``chosen`` (setting name -> value or ``None``) with each ``None`` replaced by ``FAST_PATH[job]``'s value on
    CUDA and `OFF`'s elsewhere."""
    measured = FAST_PATH[job] if device.type == "cuda" else OFF
    return {name: measured[name] if value is None else value for name, value in chosen.items()}


@contextmanager
def cudnn_autotuning(enabled: bool):
    """``torch.backends.cudnn.benchmark`` set to ``enabled`` inside the block, restored after it."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def channels_last_format(ndim: int) -> torch.memory_format:
    """The channels-last memory format of ``ndim``-D images (``channels_last_3d`` for volumes)."""
    return torch.channels_last_3d if ndim == 3 else torch.channels_last


def _padded_forward(conv: nn.Module, x: torch.Tensor, channels: int) -> torch.Tensor:
    if not x.is_cuda:
        return type(conv).forward(conv, x)
    ndim = x.ndim - 2
    pad, memory_format = [0, 0] * ndim + [0, channels - conv.in_channels], channels_last_format(ndim)
    function = F.conv3d if ndim == 3 else F.conv2d
    return function(F.pad(x, pad).contiguous(memory_format=memory_format),
                    F.pad(conv.weight, pad).contiguous(memory_format=memory_format), conv.bias, conv.stride,
                    conv.padding, conv.dilation, conv.groups)


@contextmanager
def padded_input_channels(model: nn.Module, channels: int = 8, enabled: bool = True):
    """Inside the block, each convolution of ``model`` that reads fewer than ``channels`` channels runs on CUDA
    with its input and weight zero-padded to ``channels`` channels, in channels-last format: the same result and
    gradients. (On the CPU it runs as it is.)

    With one input channel (the first conv of an image network), cuDNN's bf16 kernels for the contiguous format are
    slow: padding made the bf16 training step of the seed-size EDSR3D 20 % faster on an H100 (docs/benchmarks.md).
    Padding a conv's *output* channels the same way made its weight gradient 4x slower, so only inputs are padded.
    """
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.in_channels < channels
             and m.groups == 1] if enabled else []
    for conv in convs:  # an instance attribute: the module's class, weights and state dict are untouched
        conv.forward = lambda x, conv=conv: _padded_forward(conv, x, channels)
    try:
        yield model
    finally:
        for conv in convs:
            del conv.forward


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says a device (or the host) ran out of memory: torch and the allocators raise several types."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
