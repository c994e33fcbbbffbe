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
* `shared_subjects`: the training subjects prepared once per machine and memory-mapped by every process on it, so
  that a machine holds one copy of them, not one per process.

Effective batch: the config's ``batch_size`` per process times the number of processes. Learning rate: the peak is
scaled linearly with the number of processes (Goyal et al. 2017), reached after the one-cycle warm-up. Only process 0
writes files (`is_writer`).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.learner import Recorder
from fastai.torch_core import num_distrib, rank_distrib

from mrisr.data.pipeline import Subject


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


def join(device: torch.device) -> None:
    """Join the launcher's process group (NCCL for GPUs, gloo for the CPU) if it has not been joined yet: before
    the subjects are shared (`shared_subjects`) and the model is wrapped (accelerate then uses this group)."""
    if world_size() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


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
    (fastai's ``AvgMetric`` and ``AvgLoss``, `mrisr.training.callbacks.LossTerm`,
    `mrisr.training.callbacks.GainOverInput`) are summed over all processes, before the Recorder logs them."""

    order = Recorder.order - 1

    def after_validate(self):
        if world_size() == 1:
            return
        for metric in [self.learn.recorder.loss, *self.learn.metrics]:
            if hasattr(metric, "total") and hasattr(metric, "count"):
                sums = torch.tensor([float(metric.total), float(metric.count)], dtype=torch.float64)
                dist.all_reduce(sums)
                metric.total, metric.count = float(sums[0]), float(sums[1])


IMAGES = ("hr", "lr", "foreground", "residual")  # the large fields of a Subject, memory-mapped


def shared_subjects(prepare: Callable[[], list[Subject]]) -> list[Subject]:
    """``prepare()``'s subjects, made once per machine: the first process on each machine (``LOCAL_RANK`` 0) calls
    ``prepare()`` and writes the subjects' images as ``.npy`` files to a private temporary folder; every process on
    the machine then memory-maps them (copy-on-write), so the page cache holds one copy for all of them. The folder
    is deleted once all have mapped it (the mappings keep the data). In a single process: ``prepare()``."""
    if world_size() == 1:
        return prepare()
    first = int(os.environ.get("LOCAL_RANK", rank_distrib())) == 0
    folder = Path(tempfile.gettempdir()) / f"mrisr-subjects-{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}-" \
                                           f"{os.environ.get('MASTER_PORT', '0')}"
    if first:
        folder.mkdir(mode=0o700, exist_ok=True)
        subjects = prepare()
        for index, subject in enumerate(subjects):
            fields = {f.name: getattr(subject, f.name) for f in dataclasses.fields(subject)}  # not asdict: no copies
            for name in IMAGES:
                if fields[name] is not None:
                    value = fields[name]
                    np.save(folder / f"{index}.{name}.npy", value.numpy() if torch.is_tensor(value) else value)
            small = {k: v for k, v in fields.items() if k not in IMAGES}
            small["tensors"] = [name for name in IMAGES if torch.is_tensor(fields[name])]
            (folder / f"{index}.pkl").write_bytes(pickle.dumps(small))
        (folder / "count").write_text(str(len(subjects)))
    barrier()
    subjects = []
    for index in range(int((folder / "count").read_text())):
        small = pickle.loads((folder / f"{index}.pkl").read_bytes())  # written by this machine's first process
        tensors = small.pop("tensors")
        images = {}
        for name in IMAGES:
            path = folder / f"{index}.{name}.npy"
            array = np.load(path, mmap_mode="c") if path.exists() else None
            images[name] = torch.from_numpy(array) if array is not None and name in tensors else array
        subjects.append(Subject(**small, **images))
    barrier()
    if first:
        shutil.rmtree(folder, ignore_errors=True)
    return subjects


def share(items: list) -> list:
    """This process's share of ``items``: every N-th from its rank (all of them in a single process)."""
    return items[rank_distrib()::world_size()]


def gather(value) -> list:
    """``[value of process 0, value of process 1, ...]`` on every process (``[value]`` in a single process)."""
    if world_size() == 1:
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values
