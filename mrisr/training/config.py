"""One experiment = one `ExperimentConfig`: data, degradation, model, loss, schedule and speed settings, checked
on creation and round-tripped through JSON; `build_model` makes the network it names. `mrisr.training.train.sr_learner`
turns a config into a fastai ``Learner``; checkpoints carry it (`mrisr.training.checkpoint`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mrisr.data.cases import Split, case_name
from mrisr.networks.losses import PIXEL_LOSSES
from mrisr.networks.models import EDSR2D, EDSR3D, SRResNet2D
from mrisr.physics.degrade import Degradation, preset


@dataclass
class ExperimentConfig:
    """Everything that defines a training run, checked on creation; JSON round trip with `to_json` / `from_json`.
    docs/training.md has the ablation that chose the recipe defaults."""

    name: str = "experiment"  # the run's label in logs and tables
    # -- data: scan paths (anything `mrisr.io.load_volume` reads), split by subject (`split`, `mrisr.data.cases.Split`)
    train_paths: list[str] = field(default_factory=list)  # scans that train
    valid_paths: list[str] = field(default_factory=list)  # scans that validate; none: a slab of the last training scan
    test_paths: list[str] = field(default_factory=list)  # scans held out for testing: never loaded by training
    holdout_slab: float = 0.25  # fraction of the last training scan's voxels that validates when valid_paths is empty
    holdout_margin_mm: float = 10.0  # tissue dropped between that slab and the training part (mm)
    holdout_axis: int = 0  # volume axis (0, 1 or 2) the slab is cut along
    load_options: dict = field(default_factory=dict)  # passed to the loader (`mrisr.io.load_volume`)
    # -- degradation: what makes the low-resolution input (`mrisr.physics.degrade`)
    degradation: str | dict = "knee_fast_acquisition"  # a preset name or a `Degradation` spec dict
    degrade_on_the_fly: bool = False  # degrade each batch on the device, instead of each volume once
    # -- model (`mrisr.networks.models`)
    model: str = "edsr3d"  # "edsr3d", "srresnet2d" or "edsr2d"
    n_feats: int = 64  # channels of every residual block
    n_blocks: int = 9  # residual blocks
    scale: int = 1  # upsampling factor of the network (1: same grid in and out)
    upsampler: str = "pixelshuffle"  # "pixelshuffle", "transposed" or "nearest" (resize + conv), when scale > 1
    fold: int = 1  # edsr2d only: image axis 0 folded into channels (`fold_axis0`); patches start at its multiples
    res_scale: float = 1.0  # EDSR's residual scaling
    # -- loss (`mrisr.networks.losses`): loss + perceptual_weight x the VGG16 feature loss
    loss: str = "l1"  # the pixel term: "mse" (the seeds' choice), "l1" or "charbonnier"
    perceptual_weight: float = 0.0  # weight of the VGG16 perceptual term (0: off)
    perceptual_layers: list[str] = field(default_factory=lambda: ["conv1_1", "conv1_2", "conv2_1"])  # VGG16 layers
    perceptual_slices_per_axis: int | None = None  # 3D: random 2D slices per axis it scores (None: all)
    vgg_weights: str | None = None  # VGG16 weights file (None: $MRISR_VGG16_WEIGHTS, else torchvision's ImageNet)
    vgg_normalization: str | None = None  # "caffe" or "imagenet": the input those weights expect
    # -- schedule
    patch_size: int | list[int] | None = 32  # training patch side in HR voxels (one per axis, or None: whole image)
    patches_per_epoch: int = 64  # training patches per epoch, drawn evenly from the training subjects (rounded up)
    valid_patches_per_subject: int = 16  # validation patches per validation subject (fixed for the run)
    residual_sampling: bool = True  # draw patches towards where LR and HR differ (`PatchSampler`)
    augment: bool = True  # random flips, and permutations of axes with equal voxel size and LR factor
    batch_size: int = 8  # patches per step (per process)
    epochs: int = 10  # one-cycle epochs
    lr_max: float | None = 2e-4  # one-cycle peak learning rate (None: `lr_find`'s valley)
    warmup: float = 0.25  # fraction of the steps spent rising to lr_max
    weight_decay: float = 0.0  # AdamW weight decay
    ema: float | None = None  # decay of a moving average of the weights, validated and saved (None: off)
    # -- speed (CUDA only; None: `mrisr.training.device.FAST_PATH["train"]`, measured by benchmarks/speed; off on CPU)
    mixed_precision: str | None = None  # "bf16", "fp16" or "fp32"
    channels_last: bool | None = None  # channels-last memory format (a 3D first conv then pads to 8 channels)
    cudnn_benchmark: bool | None = None  # cuDNN times its algorithms and keeps the fastest
    compile: bool = False  # torch.compile the model
    num_workers: int | None = None  # processes cutting patches (0: in the training process)
    # -- reproducibility (docs/training.md says what it does and does not cover)
    deterministic: bool = False  # deterministic CUDA kernels (`DeterministicAlgorithms`; slower)
    seed: int = 0  # seeds Python, numpy, torch and the patch sampler: a CPU run is bit-identical
    run_dir: str = "runs/experiment"  # where config.json, best.pth and last.pth go

    def __post_init__(self):
        self._check_fields()
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        if self.mixed_precision not in (None, "bf16", "fp16", "fp32"):
            raise ValueError(f"mixed_precision must be 'bf16', 'fp16', 'fp32' or null (the fast path), got "
                             f"{self.mixed_precision!r}")
        if self.fold != 1 and self.model != "edsr2d":
            raise ValueError(f"fold is for model 'edsr2d' only (got model {self.model!r} with fold {self.fold})")
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

        for name in ("n_feats", "n_blocks", "scale", "fold", "patches_per_epoch", "valid_patches_per_subject",
                     "batch_size", "epochs"):
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
        for name in ("train_paths", "valid_paths", "test_paths", "perceptual_layers"):
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

    @property
    def split(self) -> Split:
        """The cases as a `Split` of paths."""
        return Split(*(tuple(Path(p) for p in paths) for paths in (self.train_paths, self.valid_paths,
                                                                    self.test_paths)), self.holdout_axis)

    @classmethod
    def from_dict(cls, values: dict) -> ExperimentConfig:
        values = _from_older_fields(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        return cls.from_dict(json.loads(text))

    def updated(self, settings: dict) -> ExperimentConfig:
        """This config with ``settings`` (field -> value) replaced, checked as a new one (unknown fields named)."""
        return self.from_dict({**self.to_dict(), **settings})

    def get_degradation(self) -> Degradation:
        return preset(self.degradation) if isinstance(self.degradation, str) else Degradation.from_dict(
            self.degradation)


def _from_older_fields(values: dict) -> dict:
    """A config written before the split held paths (``cases`` paths, ``valid_cases`` / ``test_cases`` names) and
    before patches were counted per epoch (``patches_per_subject``), in today's fields, so that older checkpoints
    still load."""
    values = dict(values)
    if "cases" in values:
        paths, valid, test = values.pop("cases"), values.pop("valid_cases", []), values.pop("test_cases", [])
        names = {p: case_name(p) for p in paths}
        values |= {"train_paths": [p for p in paths if names[p] not in valid + test],
                   "valid_paths": [p for p in paths if names[p] in valid],
                   "test_paths": [p for p in paths if names[p] in test]}
    if "patches_per_subject" in values:
        values["patches_per_epoch"] = values.pop("patches_per_subject") * max(1, len(values.get("train_paths", [])))
    return values


MODELS = {"edsr3d": EDSR3D, "srresnet2d": SRResNet2D, "edsr2d": EDSR2D}


def build_model(config: ExperimentConfig) -> torch.nn.Module:
    """The network the config names, freshly initialised (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    fold = {"fold": config.fold} if config.model == "edsr2d" else {}
    return MODELS[config.model](n_feats=config.n_feats, n_blocks=config.n_blocks, scale=config.scale,
                                upsampler=config.upsampler, res_scale=config.res_scale, **fold)
