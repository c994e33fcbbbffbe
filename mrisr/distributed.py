"""Data-parallel training on several processes through fastai's own engine (``fastai.distributed``): launched by
``torchrun`` (or ``mrisr train --nproc N``, or ``accelerate launch``), each process trains a replica of the model on
its share of every batch and the gradients are averaged (``DistributedDataParallel`` through accelerate).

What mrisr adds to fastai's engine:

* `ProcessGroupDL`: fastai's ``DistributedDL`` (each process takes its slice of one shuffled list of patches, so the
  patches differ across processes and follow the seed) with its index broadcast on the process group's own device,
  so that it runs on the CPU with the gloo backend too (fastai's moves it to CUDA, which only NCCL needs). Metrics
  are kept per process (no gather per batch).
* `DataParallel`: fastai's ``DistributedTrainer`` wrapping the data loaders in `ProcessGroupDL`.
* `ReduceMetrics`: the validation loss and every metric summed over all processes before they are logged, so the
  log, the best-model choice and the checkpoints see all validation patches, not one process's share.

Effective batch: the config's ``batch_size`` per process times the number of processes. Learning rate: the peak is
scaled linearly with the number of processes (Goyal et al. 2017), reached after the one-cycle warm-up. Only process 0
writes files (`is_writer`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.learner import Recorder
from fastai.torch_core import num_distrib, rank_distrib


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    return max(1, num_distrib())


def is_writer() -> bool:
    """Whether this process writes files: process 0, or the only one."""
    return rank_distrib() == 0


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def process_device(device: torch.device) -> torch.device:
    """This process's device: with several processes on one machine, ``cuda`` means GPU ``LOCAL_RANK``."""
    if world_size() > 1 and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (or the network itself)."""
    return getattr(model, "module", model)


class ProcessGroupDL(DistributedDL):
    """fastai's ``DistributedDL`` with its index broadcast on the device of the process group's backend (CPU for
    gloo, CUDA for NCCL), and per-process metrics: batches are not gathered (`ReduceMetrics` sums the metrics)."""

    def _broadcast(self, t, rank):
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(t, dtype=torch.long, device=device)
        dist.broadcast(t, rank)
        return t.cpu().tolist()

    def to_detach(self, b, cpu=True, gather=True):
        return super().to_detach(b, cpu, gather=False)


class DataParallel(DistributedTrainer):
    """fastai's ``DistributedTrainer`` (the model in ``DistributedDataParallel`` through accelerate) with its data
    loaders wrapped in `ProcessGroupDL`."""

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else ProcessGroupDL(dl, device=self.learn.model.device)


class ReduceMetrics(Callback):
    """After each validation, the validation loss and every metric that averages a ``total`` over a ``count``
    (fastai's ``AvgMetric`` and ``AvgLoss``, `mrisr.callbacks.LossTerm`, `mrisr.callbacks.GainOverInput`) are
    summed over all processes, before the Recorder logs them."""

    order = Recorder.order - 1

    def after_validate(self):
        if world_size() == 1:
            return
        for metric in [self.learn.recorder.loss, *self.learn.metrics]:
            if hasattr(metric, "total") and hasattr(metric, "count"):
                sums = torch.tensor([float(metric.total), float(metric.count)], dtype=torch.float64)
                dist.all_reduce(sums)
                metric.total, metric.count = float(sums[0]), float(sums[1])
