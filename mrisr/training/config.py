"""One experiment = one `ExperimentConfig`: data, degradation, model, loss, schedule and speed settings, checked
on creation and round-tripped through JSON; `build_model` makes the network it names. `mrisr.training.train.sr_learner`
turns a config into a fastai ``Learner``; checkpoints carry it (`mrisr.training.checkpoint`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from mrisr.networks.losses import PIXEL_LOSSES
from mrisr.networks.models import EDSR2D, EDSR3D, SRResNet2D
from mrisr.physics.degrade import Degradation, preset


@dataclass
class ExperimentConfig:
    """Everything that defines a training run; JSON round trip with `to_json` / `from_json`.

    Data: ``cases`` are scan paths (anything `mrisr.io.load_volume` reads); ``valid_cases`` / ``test_cases`` name
    cases (file stems) held out at subject level; without ``valid_cases``, a slab of the last training case
    (``holdout_slab`` fraction, behind ``holdout_margin_mm``, along volume axis ``holdout_axis``) validates.
    ``load_options`` are passed to the loader.
    Degradation: a preset name or a `Degradation` spec dict; ``degrade_on_the_fly`` applies it per batch on the
    device instead of once per volume. Model: ``"edsr3d"``, ``"srresnet2d"`` or ``"edsr2d"`` with its sizes;
    ``fold`` (edsr2d only) folds image axis 0 into channels (`mrisr.networks.models.fold_axis0`), and patches then start
    at multiples of it along that axis.
    Loss: the pixel loss ``loss`` plus ``perceptual_weight`` times the VGG16 loss (``vgg_weights`` /
    ``vgg_normalization`` as `PerceptualLoss`); the seeds' experiments are ``loss="mse"``.
    Schedule: patch size in HR voxels, patches per subject per epoch, batch size, epochs, one-cycle peak lr
    (``lr_max``; ``None``: `lr_find`'s valley) with ``warmup`` the fraction of steps spent rising to it.
    Recipe (docs/training.md has the ablation that chose the defaults): ``loss`` ``"mse"``, ``"l1"`` or
    ``"charbonnier"`` (the pixel term; the perceptual term adds to it); ``res_scale`` (EDSR's residual scaling);
    ``residual_sampling`` (patches drawn towards where LR and HR differ, `mrisr.data.pipeline.PatchSampler`); ``ema``
    (decay of an exponential moving average of the weights, used for validation and saved; ``None``: off).
    Speed (CUDA only; ``None`` means ``mrisr.training.device.FAST_PATH["train"]``'s choice, measured with
    ``mrisr bench``; off on the CPU): ``mixed_precision`` ``"bf16"``, ``"fp16"`` or ``"fp32"``; ``channels_last`` memory
    format (a 3D network's first conv then also runs padded to 8 input channels,
    `mrisr.training.device.padded_input_channels`); ``cudnn_benchmark``
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
    fold: int = 1
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

        for name in ("n_feats", "n_blocks", "scale", "fold", "patches_per_subject", "valid_patches_per_subject",
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


def build_model(config: ExperimentConfig) -> torch.nn.Module:
    """The network the config names, freshly initialised (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    fold = {"fold": config.fold} if config.model == "edsr2d" else {}
    return MODELS[config.model](n_feats=config.n_feats, n_blocks=config.n_blocks, scale=config.scale,
                                upsampler=config.upsampler, res_scale=config.res_scale, **fold)
