"""One experiment = one `ExperimentConfig`; `sr_learner` turns it into a fastai ``Learner``; checkpoints carry it.

The straight path (what the notebooks and ``mrisr train`` do)::

    config = ExperimentConfig.from_json(Path("knee_mse.json").read_text())
    learn = sr_learner(config)            # data, degradation, model, loss, metrics, checkpointing
    fit(learn, config)                    # one-cycle schedule at config.lr_max (lr_find's suggestion if None)
    model, config = load_model(Path(config.run_dir) / "best.pth")
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle and Learner.lr_find)
from fastai.callback.core import Callback, TrainEvalCallback
from fastcore.foundation import L
from fastai.callback.progress import ProgressCallback
from fastai.learner import AvgSmoothLoss, Learner, Recorder
from fastai.metrics import Metric

from mrisr.data import ResamplePatches, Subject, crop_to_multiple, prepare_subject, split_slabs, sr_dataloaders
from mrisr.degrade import Degradation, preset
from mrisr.errors import InputError
from mrisr.device import (channels_last_format, cudnn_autotuning, default_device, padded_input_channels,
                          speed_settings)
from mrisr.io.atomic import atomic_path
from mrisr.losses import PIXEL_LOSSES, PerceptualLoss, SRLoss
from mrisr.metrics import fastai_metrics, gain_db
from mrisr.models import EDSR2D, EDSR3D, SRResNet2D

CHECKPOINT_FORMAT = "mrisr-checkpoint-1"
LAST_CHECKPOINT = "last.pth"
"""The file in a run folder that `sr_learner(config, resume=True)` continues from."""


@dataclass
class ExperimentConfig:
    """Everything that defines a training run; JSON round trip with `to_json` / `from_json`.

    Data: ``cases`` are scan paths (anything `mrisr.io.load_volume` reads); ``valid_cases`` / ``test_cases`` name
    cases (file stems) held out at subject level; without ``valid_cases``, a slab of the last training case
    (``holdout_slab`` fraction, behind ``holdout_margin_mm``, along volume axis ``holdout_axis``) validates.
    ``load_options`` are passed to the loader.
    Degradation: a preset name or a `Degradation` spec dict; ``degrade_on_the_fly`` applies it per batch on the
    device instead of once per volume. Model: ``"edsr3d"``, ``"srresnet2d"`` or ``"edsr2d"`` with its sizes.
    Loss: the pixel loss ``loss`` plus ``perceptual_weight`` times the VGG16 loss (``vgg_weights`` /
    ``vgg_normalization`` as `PerceptualLoss`); the seeds' experiments are ``loss="mse"``.
    Schedule: patch size in HR voxels, patches per subject per epoch, batch size, epochs, one-cycle peak lr
    (``lr_max``; ``None``: `lr_find`'s valley) with ``warmup`` the fraction of steps spent rising to it.
    Recipe (docs/training.md has the ablation that chose the defaults): ``loss`` ``"mse"``, ``"l1"`` or
    ``"charbonnier"`` (the pixel term; the perceptual term adds to it); ``res_scale`` (EDSR's residual scaling);
    ``residual_sampling`` (patches drawn towards where LR and HR differ, `mrisr.data.PatchSampler`); ``ema``
    (decay of an exponential moving average of the weights, used for validation and saved; ``None``: off).
    Speed (CUDA only; ``None`` means ``mrisr.device.FAST_PATH["train"]``'s choice, measured with ``mrisr bench``;
    off on the CPU): ``mixed_precision`` ``"bf16"``, ``"fp16"`` or ``"fp32"``; ``channels_last`` memory format (a 3D
    network's first conv then also runs padded to 8 input channels, `mrisr.device.padded_input_channels`);
    ``cudnn_benchmark``
    (cuDNN picks its fastest algorithms by timing them); ``compile`` (``torch.compile`` of the model);
    ``num_workers`` processes cutting patches (0: in the training process).
    Reproducibility: ``seed`` makes a CPU run bit-identical; ``deterministic`` adds deterministic kernels on CUDA
    (`DeterministicAlgorithms`, slower; docs/training.md says what it does and does not cover).
    """

    name: str = "experiment"
    cases: list[str] = field(default_factory=list)
    valid_cases: list[str] = field(default_factory=list)
    test_cases: list[str] = field(default_factory=list)
    holdout_slab: float = 0.25
    holdout_margin_mm: float = 10.0
    holdout_axis: int = 0
    load_options: dict = field(default_factory=dict)
    degradation: str | dict = "knee_fast_acquisition"
    degrade_on_the_fly: bool = False
    model: str = "edsr3d"
    n_feats: int = 64
    n_blocks: int = 9
    scale: int = 1
    upsampler: str = "pixelshuffle"
    perceptual_weight: float = 0.0
    perceptual_layers: list[str] = field(default_factory=lambda: ["conv1_1", "conv1_2", "conv2_1"])
    perceptual_slices_per_axis: int | None = None
    vgg_weights: str | None = None
    vgg_normalization: str | None = None
    patch_size: int | list[int] | None = 32
    patches_per_subject: int = 64
    valid_patches_per_subject: int = 16
    batch_size: int = 8
    epochs: int = 10
    lr_max: float | None = 2e-4
    warmup: float = 0.25
    weight_decay: float = 0.0
    loss: str = "l1"
    res_scale: float = 1.0
    residual_sampling: bool = True
    ema: float | None = None
    augment: bool = True
    mixed_precision: str | None = None
    channels_last: bool | None = None
    cudnn_benchmark: bool | None = None
    compile: bool = False
    num_workers: int | None = None
    deterministic: bool = False
    seed: int = 0
    run_dir: str = "runs/experiment"

    def __post_init__(self):
        self._check_fields()
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        if self.mixed_precision not in (None, "bf16", "fp16", "fp32"):
            raise ValueError(f"mixed_precision must be 'bf16', 'fp16', 'fp32' or null (the fast path), got "
                             f"{self.mixed_precision!r}")
        if self.loss not in PIXEL_LOSSES:
            raise ValueError(f"loss must be one of {list(PIXEL_LOSSES)}, got {self.loss!r}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema is a decay in (0, 1) or None, got {self.ema!r}")
        if self.deterministic and self.cudnn_benchmark:
            raise ValueError("deterministic excludes cudnn_benchmark (its timing picks varying algorithms): set "
                             "cudnn_benchmark to false or null")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup!r}")

    def _check_fields(self):
        """Type and range of every field, one message naming the field and what it must be."""
        def need(ok: bool, name: str, what: str):
            if not ok:
                raise ValueError(f"{name} must be {what}, got {getattr(self, name)!r}")

        def integer(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)

        for name in ("n_feats", "n_blocks", "scale", "patches_per_subject", "valid_patches_per_subject", "batch_size",
                     "epochs"):
            need(integer(getattr(self, name)) and getattr(self, name) >= 1, name, "an integer >= 1")
        need(integer(self.seed), "seed", "an integer")
        need(self.holdout_axis in (0, 1, 2) and integer(self.holdout_axis), "holdout_axis", "0, 1 or 2")
        need(self.num_workers is None or integer(self.num_workers) and self.num_workers >= 0, "num_workers",
             "an integer >= 0 or null")
        need(self.lr_max is None or number(self.lr_max) and self.lr_max > 0, "lr_max", "a number > 0 or null")
        need(number(self.holdout_slab) and 0 < self.holdout_slab < 1, "holdout_slab", "a fraction in (0, 1)")
        for name in ("holdout_margin_mm", "weight_decay", "perceptual_weight"):
            need(number(getattr(self, name)) and getattr(self, name) >= 0, name, "a number >= 0")
        need(number(self.res_scale) and self.res_scale > 0, "res_scale", "a number > 0")
        for name in ("degrade_on_the_fly", "residual_sampling", "augment", "compile", "deterministic"):
            need(isinstance(getattr(self, name), bool), name, "true or false")
        for name in ("channels_last", "cudnn_benchmark"):
            need(getattr(self, name) is None or isinstance(getattr(self, name), bool), name, "true, false or null")
        for name in ("name", "upsampler", "run_dir"):
            need(isinstance(getattr(self, name), str) and getattr(self, name) != "", name, "a non-empty string")
        for name in ("cases", "valid_cases", "test_cases", "perceptual_layers"):
            value = getattr(self, name)
            need(isinstance(value, list) and all(isinstance(v, str) for v in value), name, "a list of strings")
        need(isinstance(self.load_options, dict), "load_options", "an object")
        need(isinstance(self.degradation, (str, dict)), "degradation", "a preset name or a spec object")
        patch = self.patch_size
        need(patch is None or integer(patch) and patch >= 1 or isinstance(patch, list) and len(patch) in (2, 3)
             and all(integer(v) and v >= 1 for v in patch), "patch_size",
             "an integer >= 1, a list of 2 or 3 of them, or null")
        need(self.perceptual_slices_per_axis is None or integer(self.perceptual_slices_per_axis)
             and self.perceptual_slices_per_axis >= 1, "perceptual_slices_per_axis", "an integer >= 1 or null")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> ExperimentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        return cls.from_dict(json.loads(text))

    def get_degradation(self) -> Degradation:
        return preset(self.degradation) if isinstance(self.degradation, str) else Degradation.from_dict(
            self.degradation)


MODELS = {"edsr3d": EDSR3D, "srresnet2d": SRResNet2D, "edsr2d": EDSR2D}


class DeviceSmoothLoss(AvgSmoothLoss):
    """fastai's smoothed training loss, kept on the loss's device: fastai's own copies it to the CPU after every
    step, which makes the host wait for the GPU and stops it preparing the next batch meanwhile."""

    def accumulate(self, learn):
        self.count += 1
        loss = learn.loss.mean().detach()
        self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)


class FastPath(Callback):
    """Speed settings for a fit: the model and each input batch in channels-last memory format (``channels_last_3d``
    for volumes), cuDNN autotuning (``torch.backends.cudnn.benchmark``, restored after the fit), and the smoothed
    training loss kept on the device (`DeviceSmoothLoss`) so that no step waits for the GPU."""

    device_smooth_loss = True

    def __init__(self, channels_last: bool, cudnn_benchmark: bool):
        self.channels_last, self.cudnn_benchmark = channels_last, cudnn_benchmark

    def before_fit(self):
        recorder = getattr(self.learn, "recorder", None)
        if self.device_smooth_loss and recorder is not None and not isinstance(recorder.smooth_loss,
                                                                                DeviceSmoothLoss):
            recorder.smooth_loss = DeviceSmoothLoss(recorder.smooth_loss.beta)
        self.autotuning = cudnn_autotuning(self.cudnn_benchmark or torch.backends.cudnn.benchmark)
        self.autotuning.__enter__()
        self.padding = padded_input_channels(self.learn.model,
                                             enabled=self.channels_last and self.learn.model.ndim == 3)
        self.padding.__enter__()
        if self.channels_last:
            self.learn.model.to(memory_format=channels_last_format(self.learn.model.ndim))

    def before_batch(self):
        if self.channels_last:
            self.learn.xb = tuple(x.contiguous(memory_format=channels_last_format(x.ndim - 2)) for x in self.learn.xb)

    def after_fit(self):
        self.autotuning.__exit__(None, None, None)
        self.padding.__exit__(None, None, None)
        recorder = getattr(self.learn, "recorder", None)
        if recorder is not None:  # the smoothed losses, on the CPU for plotting and lr_find's suggestions
            recorder.losses = [v.cpu() if torch.is_tensor(v) else v for v in recorder.losses]


def build_model(config: ExperimentConfig) -> torch.nn.Module:
    """The network the config names, freshly initialised (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    return MODELS[config.model](n_feats=config.n_feats, n_blocks=config.n_blocks, scale=config.scale,
                                upsampler=config.upsampler, res_scale=config.res_scale)


def load_subjects(config: ExperimentConfig) -> list[Subject]:
    """Load, degrade and normalise the config's training and validation cases (test cases are left alone), each
    cut to the degradation's size multiple (`mrisr.data.crop_to_multiple`).

    Without ``valid_cases``, the last training case is split into a training part and a spatially disjoint hold-out
    slab named ``<case>:holdout`` that validates.
    """
    from mrisr.io import load_volume

    spec = config.get_degradation()
    paths = [Path(p) for p in config.cases]
    chosen = [p for p in paths if case_name(p) not in config.test_cases]
    if not chosen:
        raise ValueError("no training cases: every case is a test case (or cases is empty)")
    subjects = []
    multiple = [slab_multiple(spec, axis) for axis in range(3)]
    for path in chosen:
        volume = crop_to_multiple(load_volume(path, **config.load_options), multiple)
        if path == chosen[-1] and not config.valid_cases:
            train, holdout = split_slabs(volume, config.holdout_slab, config.holdout_margin_mm, config.holdout_axis,
                                         slab_multiple(spec, config.holdout_axis))
            parts = [(train, case_name(path)), (holdout, f"{case_name(path)}:holdout")]
        else:
            parts = [(volume, case_name(path))]
        subjects += [prepare_subject(part, spec, name, config.seed, on_the_fly=config.degrade_on_the_fly)
                     for part, name in parts]
    return subjects


def slab_multiple(degradation: Degradation, axis: int) -> int:
    """The length a slab along volume ``axis`` must be a multiple of for ``degradation`` (its downsampling)."""
    return dict(zip(range(3 - degradation.ndim, 3), degradation.size_multiple())).get(axis, 1)


def case_name(path: str | Path) -> str:
    """A case's name: its file name without the format suffix (a DICOM folder: the folder's name)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".h5", ".mat", ".npy"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def split_cases(paths: list[Path], run_dir: Path, degradation: Degradation | None = None,
                load_options: dict | None = None,
                n_test: int | None = None) -> tuple[list[Path], list[str], list[str], int]:
    """A subject-level split: ``(cases, validation names, test names, slab axis)``.

    About a quarter of the subjects (at least one; or ``n_test``) test, one validates when three or more remain.
    Slabs (a hold-out for validation when no subject is left for it, `load_subjects`) are cut along the first
    volume's longest axis. A single volume gives up its last quarter along that axis (behind a 10 mm margin, cut to
    ``degradation``'s size multiple) as the test subject; both parts are written as NIfTI in ``run_dir``.
    """
    from mrisr.io import load_volume, save_volume

    first = load_volume(paths[0], **(load_options or {}))
    axis = int(np.argmax(first.shape))
    if len(paths) == 1:
        multiple = slab_multiple(degradation, axis) if degradation is not None else 1
        train, test = split_slabs(first, holdout=0.25, margin_mm=10.0, axis=axis, multiple=multiple)
        name = case_name(paths[0])
        cases = [save_volume(part, run_dir / f"{name}_{role}.nii.gz") for part, role in ((train, "train"),
                                                                                          (test, "test"))]
        return cases, [], [case_name(cases[1])], axis
    n_test = n_test or max(1, round(len(paths) / 4))
    names = [case_name(p) for p in paths]
    valid = [names[-n_test - 1]] if len(paths) - n_test >= 3 else []
    return list(paths), valid, names[-n_test:], axis


def validation_names(config: ExperimentConfig, subjects: list[Subject]) -> list[str]:
    return list(config.valid_cases) or [s.name for s in subjects if s.name.endswith(":holdout")]


class LossTerm(Metric):
    """A fastai metric that averages one term of `SRLoss` (its pixel loss or ``"perceptual"``) over the batches."""

    def __init__(self, term: str):
        self.term = term

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, learn):
        bs = learn.yb[0].shape[0]
        self.total += float(learn.loss_func.terms[self.term]) * bs
        self.count += bs

    @property
    def value(self):
        return self.total / self.count if self.count else None

    @property
    def name(self):
        return f"{self.term}_loss"


class GainOverInput(Metric):
    """``gain_db``: mean PSNR of the model's output minus mean PSNR of its own input, on the same patches (dB, data
    range 1 of the normalised scale; `mrisr.metrics.gain_db`). Positive: the network is better than doing nothing."""

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, learn):
        gain = gain_db(learn.pred, learn.xb[0], learn.yb[0])
        self.total += float(gain.sum())
        self.count += len(gain)

    @property
    def value(self):
        return self.total / self.count if self.count else None

    @property
    def name(self):
        return "gain_db"


class WeightEMA(Callback):
    """An exponential moving average of the weights (``torch.optim.swa_utils``, decay ``decay`` per step): validation,
    checkpoints and the fitted model use the average; training steps update the raw weights (Polyak averaging, as
    in many SR and diffusion recipes). The average is swapped in before each validation and the raw weights back
    before the next epoch's training, so the checkpoint of an epoch holds the average. Skipped during ``lr_find``."""

    def __init__(self, decay: float = 0.999):
        self.decay = decay

    def before_fit(self):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.skip = hasattr(self.learn, "lr_finder")
        if not self.skip:
            self.average = AveragedModel(self.learn.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                         use_buffers=True)
            self.raw = None

    def after_step(self):
        if not self.skip:
            self.average.update_parameters(self.learn.model)

    def before_validate(self):
        if not self.skip:
            self.raw = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}
            self.learn.model.load_state_dict(self.average.module.state_dict())

    def before_train(self):
        if not self.skip and self.raw is not None:
            self.learn.model.load_state_dict(self.raw)
            self.raw = None

    def state_dict(self) -> dict:
        """The average and the raw weights (between an epoch's validation and the next training they differ)."""
        return {"average": self.average.state_dict(), "raw": self.raw}

    def load_state_dict(self, state: dict):
        self.average.load_state_dict(state["average"])
        self.raw = state["raw"]


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
    learn.checkpoint.peak_lr = lr
    if done >= config.epochs:
        print(f"{Path(config.run_dir) / LAST_CHECKPOINT}: all {config.epochs} epochs were already trained")
        learn.remove_cb(resume)
        learn.model.load_state_dict(read_checkpoint(learn.checkpoint.best_path)["model"])
        return lr
    learn.fit_one_cycle(config.epochs - done, lr, pct_start=config.warmup)
    return lr


def save_checkpoint(model: torch.nn.Module, config: ExperimentConfig, path: Path, training: dict | None = None,
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


def random_streams(learn: Learner) -> dict:
    """Every random stream a training epoch draws from: Python's ``random``, numpy's and torch's global generators
    (CPU and each CUDA device) and each fastai DataLoader's own ``rng`` (its shuffle). Worker processes are seeded
    from torch's generator by fastai, and patch places are a function of ``(seed, epoch)`` (`PatchSampler`), so
    these are all. Lists and tensors only, so that ``torch.load(weights_only=True)`` reads them back."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, key.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loaders": [dl.rng.getstate() for dl in learn.dls.loaders]}


def set_random_streams(learn: Learner, streams: dict) -> None:
    """Put back what `random_streams` saved."""
    random.setstate(_tuples(streams["python"]))
    kind, key, pos, has_gauss, gauss = streams["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(streams["torch"].cpu())
    if streams["cuda"] and torch.cuda.is_available() and len(streams["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in streams["cuda"]])
    for dl, state in zip(learn.dls.loaders, streams["loaders"]):
        dl.rng.setstate(_tuples(state))


def _plain(value):
    """``value`` with fastcore's ``L`` made a list and numpy scalars Python numbers: ``weights_only`` loads neither."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, L)):
        return type(value)(_plain(v) for v in value) if isinstance(value, tuple) else [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _tuples(value):
    """``random.setstate`` wants the nested tuples that a checkpoint may give back as lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class Checkpoint(Callback):
    """After every epoch: ``<run_dir>/best.pth`` when the validation loss is the lowest so far, then
    ``<run_dir>/last.pth`` with everything `ResumeFrom` needs to continue the run exactly (optimiser, loss scaler,
    random streams, the states of callbacks that have a ``state_dict``, the peak lr). At the end of ``fit`` the best
    model is loaded back. Both files are written atomically, best first, so a run killed at any point leaves a
    ``last.pth`` that resumes to the same weights. Skipped during ``lr_find``."""

    order = Recorder.order + 1  # after the epoch's losses are recorded
    monitor = "valid_loss"

    def __init__(self, run_dir: Path, config: ExperimentConfig):
        self.best_path, self.last_path = Path(run_dir) / "best.pth", Path(run_dir) / LAST_CHECKPOINT
        self.config = config
        self.best, self.peak_lr = float("inf"), None

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict):
        self.best = state["best"]

    def before_fit(self):
        self.skip = hasattr(self.learn, "lr_finder")

    def after_epoch(self):
        if self.skip:
            return
        value = float(self.recorder.values[-1][list(self.recorder.metric_names[1:]).index(self.monitor)])
        if value < self.best:
            self.best = value
            save_checkpoint(self.learn.model, self.config, self.best_path, epoch=self.epoch, monitor=self.monitor,
                            value=value)
        # the callbacks that keep state; asked of the class, since a callback's attributes fall back to the learner's
        states = {type(cb).__name__: cb.state_dict() for cb in self.learn.cbs if hasattr(type(cb), "state_dict")}
        scaler = getattr(self.learn, "scaler", None)
        training = {"epochs_done": self.epoch + 1, "peak_lr": self.peak_lr,
                    "optimizer": _plain(self.learn.opt.state_dict()),
                    "scaler": scaler.state_dict() if scaler is not None else None, "callbacks": states,
                    "random": random_streams(self.learn)}
        save_checkpoint(self.learn.model, self.config, self.last_path, training=training, epoch=self.epoch,
                        monitor=self.monitor, value=value)

    def after_fit(self):
        if not self.skip and self.best_path.exists():
            self.learn.model.load_state_dict(read_checkpoint(self.best_path)["model"])


class ResumeFrom(Callback):
    """Continue a run from the ``last.pth`` its `Checkpoint` wrote: before the first epoch the weights, the
    optimiser's moments, the loss scaler, the callbacks' states (best score, weight average) and every random stream
    (`random_streams`) come back as they were, and the epoch counter carries on from ``epochs_done``. fastai's
    one-cycle schedule is a function of ``epoch / n_epoch`` and the patches of ``(seed, epoch)``, so the rest of the
    run is the one an uninterrupted run would have had: `fit` trains only the epochs left. Skipped during ``lr_find``.
    """

    order = TrainEvalCallback.order - 1  # before anything reads the epoch counter

    def __init__(self, saved: dict, epochs: int):
        self.saved, self.epochs = saved, epochs
        self.done, self.peak_lr = saved["training"]["epochs_done"], saved["training"]["peak_lr"]

    def before_fit(self):
        self.skip, self.restored = hasattr(self.learn, "lr_finder"), False

    def before_epoch(self):
        if self.skip:
            return
        self.learn.epoch += self.done  # the loop counts the epochs left; the schedule and patches need the true one
        self.learn.n_epoch = self.epochs
        if not self.restored:
            training = self.saved["training"]
            self.learn.model.load_state_dict(self.saved["model"])
            self.learn.opt.load_state_dict({"state": training["optimizer"]["state"],
                                            "hypers": L(training["optimizer"]["hypers"])})
            if training["scaler"] is not None and getattr(self.learn, "scaler", None) is not None:
                self.learn.scaler.load_state_dict(training["scaler"])
            for cb in self.learn.cbs:
                if type(cb).__name__ in training["callbacks"]:
                    cb.load_state_dict(training["callbacks"][type(cb).__name__])
            set_random_streams(self.learn, training["random"])
            self.restored = True

    def after_fit(self):
        if not self.skip:
            self.learn.remove_cb(self)  # spent: a later fit starts from its own epoch 0


class DeterministicAlgorithms(Callback):
    """Deterministic kernels for the fit (``config.deterministic``): ``torch.use_deterministic_algorithms(True)``,
    cuDNN's deterministic algorithms and no autotuning; all three restored after the fit. An op without a
    deterministic implementation then raises an error naming it. `sr_learner` also sets ``CUBLAS_WORKSPACE_CONFIG``
    (cuBLAS needs it before its first call). See docs/training.md, "Reproducibility"."""

    order = FastPath.order + 1  # after FastPath has set cuDNN autotuning, so that it is off

    def before_fit(self):
        self.saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                      torch.backends.cudnn.benchmark)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False

    def after_fit(self):
        torch.use_deterministic_algorithms(self.saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = self.saved[1:]


def epoch_logger(learn: Learner):
    """A fastai logger printing one plain line per epoch (instead of progress bars), skipping ``lr_find``."""

    def log(values):
        if hasattr(learn, "lr_finder"):
            return
        cells = [f"{n} {v:.5g}" if isinstance(v, float) else f"{n} {v}"
                 for n, v in zip(learn.recorder.metric_names, values)]
        print("  ".join(cells), flush=True)

    return log


def _interactive() -> bool:
    try:
        from IPython import get_ipython

        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            return True
    except ImportError:
        pass
    return sys.stdout.isatty()


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
               progress: bool | None = None, resume: bool = False) -> Learner:
    """A fastai ``Learner`` for ``config``: data (``subjects`` or the config's cases), model, `SRLoss`, metrics
    (each loss term, PSNR, SSIM, HFEN on the normalised scale, data range 1), checkpoints ``<run_dir>/best.pth``
    and ``last.pth`` (`Checkpoint`), the config written to ``<run_dir>/config.json``, mixed precision on CUDA as
    configured. ``progress=None`` shows fastai's bars in a terminal or notebook, else one line per epoch.
    ``resume=True`` continues from ``<run_dir>/last.pth`` (`ResumeFrom`; from the start when there is none yet):
    `fit` then trains the epochs left and reaches the weights an uninterrupted run would have."""
    from fastai.torch_core import set_seed

    set_seed(config.seed)  # Python's random (the DataLoader's shuffle), numpy and torch; cuDNN's flags left alone
    device = default_device(device)
    saved = resume_state(config, device) if resume else None
    if resume and saved is None:
        print(f"{Path(config.run_dir) / LAST_CHECKPOINT} not found: no epoch was finished, starting from the first")
    fast = speed_settings("train", device, **{k: getattr(config, k) for k in
                                              ("mixed_precision", "channels_last", "cudnn_benchmark", "num_workers")})
    if config.deterministic:
        fast["cudnn_benchmark"] = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    subjects = subjects if subjects is not None else load_subjects(config)
    on_the_fly = config.get_degradation() if config.degrade_on_the_fly else None
    dls, sampler = sr_dataloaders(subjects, validation_names(config, subjects), config.patch_size,
                                  config.patches_per_subject, config.valid_patches_per_subject, config.batch_size,
                                  config.augment, on_the_fly, seed=config.seed, device=device,
                                  num_workers=fast["num_workers"], residual_sampling=config.residual_sampling)
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
    learn = Learner(dls, model, loss_func=loss, metrics=metrics, wd=config.weight_decay, path=run_dir, model_dir=".",
                    cbs=cbs)
    if device.type == "cuda" and fast["mixed_precision"] != "fp32":
        learn = learn.to_bf16() if fast["mixed_precision"] == "bf16" else learn.to_fp16()
    if not (progress if progress is not None else _interactive()):
        learn.remove_cb(ProgressCallback)
        learn.logger = epoch_logger(learn)
    learn.subjects = subjects
    return learn
