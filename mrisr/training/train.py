"""Training: `sr_learner` turns an `ExperimentConfig` (`mrisr.training.config`) into a fastai ``Learner``; `fit` runs
its one-cycle schedule; `load_model` rebuilds a trained network from a checkpoint.

The straight path (what the notebooks and ``mrisr train`` do)::

    config = ExperimentConfig.from_json(Path("knee_mse.json").read_text())
    learn = sr_learner(config)            # data, degradation, model, loss, metrics, checkpointing
    fit(learn, config)                    # one-cycle schedule at config.lr_max (lr_find's suggestion if None)
    model, config = load_model(Path(config.run_dir) / "best.pth")
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle and Learner.lr_find)
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner
from fastcore.imports import in_notebook

from mrisr.data.cases import load_subjects, patches_per_subject, validation_names
from mrisr.data.pipeline import Subject, sr_dataloaders
from mrisr.errors import InputError
from mrisr.imaging.metrics import fastai_metrics
from mrisr.io.atomic import atomic_path
from mrisr.networks.losses import PerceptualLoss, SRLoss
from mrisr.training.callbacks import (Checkpoint, DeterministicAlgorithms, FastPath, GainOverInput, LossTerm,
                                      ResamplePatches, ResumeFrom, WeightEMA, epoch_logger)
from mrisr.training.checkpoint import LAST_CHECKPOINT, read_checkpoint
from mrisr.training.config import ExperimentConfig, build_model
from mrisr.training.device import default_device, speed_settings
from mrisr.training.distributed import (DataParallel, ReduceMetrics, is_writer, join, process_device, shared_subjects,
                                        world_size)


def fit(learn: Learner, config: ExperimentConfig) -> float:
    """Train ``learn`` with the one-cycle schedule (``config.epochs``, peak ``config.lr_max`` reached after
    ``config.warmup`` of the steps); with ``lr_max=None`` the peak is `lr_find`'s valley. A learner made with
    ``resume=True`` trains only the epochs its ``last.pth`` had left, at that run's peak. Returns the peak lr."""
    resume = getattr(learn, "resume_from", None)  # fastai names each callback an attribute of its learner
    done = resume.done if resume is not None else 0
    if resume is not None and resume.peak_lr is not None:
        lr = resume.peak_lr
    else:
        lr = config.lr_max if config.lr_max is not None else float(learn.lr_find(show_plot=False).valley)
        lr *= world_size()  # linear scaling with the effective batch (`mrisr.training.distributed`)
    if world_size() > 1 and is_writer():
        print(f"{world_size()} processes: effective batch {config.batch_size} x {world_size()} = "
              f"{config.batch_size * world_size()}; peak learning rate {lr:.3g} (scaled linearly, reached after "
              f"{config.warmup:.0%} of the steps)", flush=True)
    learn.checkpoint.peak_lr = lr
    if done >= config.epochs:
        print(f"{Path(config.run_dir) / LAST_CHECKPOINT}: all {config.epochs} epochs were already trained")
        learn.remove_cb(resume)
        learn.model.load_state_dict(read_checkpoint(learn.checkpoint.best_path)["model"])
        return lr
    learn.fit_one_cycle(config.epochs - done, lr, pct_start=config.warmup)
    return lr


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ExperimentConfig]:
    """Rebuild the model from a checkpoint written by `save_checkpoint`; returns ``(model in eval mode, config)``.
    ``best.pth`` holds the best epoch's weights, ``last.pth`` the last epoch's (both as validated: the weight
    average where ``ema`` is on)."""
    saved = read_checkpoint(checkpoint, device)
    try:
        config = ExperimentConfig.from_dict(saved["config"])
        model = build_model(config)
        model.load_state_dict(saved["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(checkpoint, f"its config and weights do not fit together ({first})") from None
    return model.to(device).eval(), config


def resume_state(config: ExperimentConfig, device=None) -> dict | None:
    """What ``<run_dir>/last.pth`` holds to continue ``config``'s run (tensors on ``device``), or ``None`` when the
    run has no finished epoch yet. A ``last.pth`` written with other settings is an `InputError` naming the
    settings that differ."""
    path = Path(config.run_dir) / LAST_CHECKPOINT
    if not path.exists():
        return None
    saved = read_checkpoint(path, device or "cpu")
    if "training" not in saved:
        raise InputError(path, "holds no training state to resume from")
    ours = config.to_dict()
    differ = sorted(k for k in set(ours) | set(saved["config"]) if saved["config"].get(k) != ours.get(k))
    if differ:
        raise InputError(path, f"was written with other settings ({', '.join(differ)}): resume with the config it "
                               "was written with, or start a new run")
    return saved


def sr_learner(config: ExperimentConfig, subjects: list[Subject] | None = None, device=None,
               progress: bool | None = None, resume: bool = False, valid_names: list[str] | None = None) -> Learner:
    """A fastai ``Learner`` for ``config``: data (``subjects`` or the config's cases), model, `SRLoss`, metrics
    (each loss term, PSNR, SSIM, HFEN on the normalised scale, data range 1), checkpoints ``<run_dir>/best.pth``
    and ``last.pth`` (`Checkpoint`), the config written to ``<run_dir>/config.json``, mixed precision on CUDA as
    configured. ``progress=None`` shows fastai's bars in a terminal or notebook, else one line per epoch.
    ``resume=True`` continues from ``<run_dir>/last.pth`` (`ResumeFrom`; from the start when there is none yet):
    `fit` then trains the epochs left and reaches the weights an uninterrupted run would have. ``valid_names``: which
    of ``subjects`` validate (default: the config's validation cases, else the ``<case>:holdout`` slabs)."""
    from fastai.torch_core import set_seed

    set_seed(config.seed)  # Python's random (the DataLoader's shuffle), numpy and torch; cuDNN's flags left alone
    device = process_device(default_device(device))
    join(device)  # a launcher's process group, when there is one
    saved = resume_state(config, device) if resume else None
    if resume and saved is None:
        print(f"{Path(config.run_dir) / LAST_CHECKPOINT} not found: no epoch was finished, starting from the first")
    fast = speed_settings("train", device, **{k: getattr(config, k) for k in
                                              ("mixed_precision", "channels_last", "cudnn_benchmark", "num_workers")})
    if config.deterministic:
        fast["cudnn_benchmark"] = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    subjects = subjects if subjects is not None else shared_subjects(lambda: load_subjects(config))
    on_the_fly = config.get_degradation() if config.degrade_on_the_fly else None
    valid_names = valid_names if valid_names is not None else validation_names(config, subjects)
    n_train = max(1, len(subjects) - len(set(valid_names)))
    dls, sampler = sr_dataloaders(subjects, valid_names, config.patch_size,
                                  patches_per_subject(config.patches_per_epoch, n_train),
                                  config.valid_patches_per_subject, config.batch_size,
                                  config.augment, on_the_fly, seed=config.seed, device=device,
                                  num_workers=fast["num_workers"], residual_sampling=config.residual_sampling,
                                  align=(config.fold,) + (1,) * (subjects[0].ndim - 1))
    perceptual = None
    if config.perceptual_weight:
        perceptual = PerceptualLoss(config.perceptual_layers, weights=config.vgg_weights,
                                    normalization=config.vgg_normalization,
                                    slices_per_axis=config.perceptual_slices_per_axis).to(device)
    loss = SRLoss(perceptual, config.perceptual_weight, pixel=config.loss)
    metrics = [LossTerm(config.loss)] + ([LossTerm("perceptual")] if perceptual is not None else [])
    metrics += fastai_metrics(data_range=1.0)[:1] + [GainOverInput()] + fastai_metrics(data_range=1.0)[1:]
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_writer():
        with atomic_path(run_dir / "config.json", ".json") as tmp:
            tmp.write_text(config.to_json())
    model = build_model(config).to(device)
    if config.compile:
        model.compile()  # in place: the state dict keeps its keys, so checkpoints load into plain models
    cbs = [ResamplePatches(sampler), Checkpoint(run_dir, config),
           FastPath(bool(fast["channels_last"]), bool(fast["cudnn_benchmark"]))]
    cbs += [WeightEMA(config.ema)] if config.ema else []
    cbs += [DeterministicAlgorithms()] if config.deterministic else []
    cbs += [ResumeFrom(saved, config.epochs)] if saved is not None else []
    if world_size() > 1:  # launched by torchrun or accelerate: data parallel through fastai.distributed
        cbs += [DataParallel(sync_bn=False, cpu=device.type == "cpu"), ReduceMetrics()]
    learn = Learner(dls, model, loss_func=loss, metrics=metrics, wd=config.weight_decay, path=run_dir, model_dir=".",
                    cbs=cbs)
    if device.type == "cuda" and fast["mixed_precision"] != "fp32":
        learn = learn.to_bf16() if fast["mixed_precision"] == "bf16" else learn.to_fp16()
    if not (progress if progress is not None else in_notebook() or sys.stdout.isatty()):
        learn.remove_cb(ProgressCallback)
        learn.logger = epoch_logger(learn)
    return learn
