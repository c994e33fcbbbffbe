"""What a training run writes to disk and reads back: checkpoints (`save_checkpoint`, `read_checkpoint`) and the
random streams a resumed run must continue (`random_streams`).

A checkpoint is a ``torch.save`` dict ``{format, config, model, info}``, read with ``weights_only=True``; a run
folder's ``last.pth`` adds ``training`` (optimiser, scaler, callbacks' states, random streams, peak lr), which
`mrisr.training.callbacks.ResumeFrom` puts back. Models are rebuilt from checkpoints by
`mrisr.training.train.load_model`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from fastai.learner import Learner
from fastcore.foundation import L

from mrisr.errors import InputError
from mrisr.io.atomic import atomic_path

CHECKPOINT_FORMAT = "mrisr-checkpoint-1"


LAST_CHECKPOINT = "last.pth"
"""The file in a run folder that `sr_learner(config, resume=True)` continues from."""


def save_checkpoint(model: torch.nn.Module, config, path: Path, training: dict | None = None,
                    **info) -> Path:
    """Write ``{format, config, model state, info}`` atomically (temporary name, then rename); ``training`` (what
    `resume_state` reads back: optimiser, random streams, callbacks' states) is added under its own key."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    saved = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "model": state, "info": info}
    if training is not None:
        saved["training"] = training
    with atomic_path(path, ".pth") as tmp:
        torch.save(saved, tmp)
    return path


def read_checkpoint(checkpoint: str | Path, device: str | torch.device = "cpu") -> dict:
    """The dict `save_checkpoint` wrote, tensors on ``device``; a missing, damaged or foreign file is an `InputError`
    naming it."""
    checkpoint = Path(checkpoint)
    try:
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError(checkpoint, "checkpoint not found") from None
    except Exception as err:  # noqa: BLE001 (torch raises many types for damaged files)
        raise InputError(checkpoint, f"cannot be read as a checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise InputError(checkpoint, f"not an mrisr checkpoint (expected format {CHECKPOINT_FORMAT})")
    return saved


def random_streams(learn: Learner) -> dict:
    """Every random stream a training epoch draws from: Python's ``random``, numpy's and torch's global generators
    (CPU and each CUDA device) and each fastai DataLoader's own ``rng`` (its shuffle). Worker processes are seeded
    from torch's generator by fastai, and patch places are a function of ``(seed, epoch)`` (`PatchSampler`), so
    these are all. Lists and tensors only, so that ``torch.load(weights_only=True)`` reads them back."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, key.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loaders": [getattr(dl, "dl", dl).rng.getstate() for dl in learn.dls.loaders]}  # inside DistributedDL


def set_random_streams(learn: Learner, streams: dict) -> None:
    """Put back what `random_streams` saved."""
    random.setstate(_tuples(streams["python"]))
    kind, key, pos, has_gauss, gauss = streams["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(streams["torch"].cpu())
    if streams["cuda"] and torch.cuda.is_available() and len(streams["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in streams["cuda"]])
    for dl, state in zip(learn.dls.loaders, streams["loaders"]):
        getattr(dl, "dl", dl).rng.setstate(_tuples(state))


def weights_only_safe(value):
    """``value`` with fastcore's ``L`` made a list and numpy scalars Python numbers: ``weights_only`` loads neither."""
    if isinstance(value, dict):
        return {k: weights_only_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, L)):
        plain = [weights_only_safe(v) for v in value]
        return tuple(plain) if isinstance(value, tuple) else plain
    return value.item() if isinstance(value, np.generic) else value


def _tuples(value):
    """``random.setstate`` wants the nested tuples that a checkpoint may give back as lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
