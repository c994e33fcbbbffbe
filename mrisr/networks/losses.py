"""Training losses: pixel MSE and a VGG16 perceptual (feature) loss, for 2D images and 3D volumes.

Perceptual loss (Johnson et al. 2016): the distance between the activations of a frozen ImageNet VGG16 (Simonyan and
Zisserman 2015) for the prediction and for the target. It rewards matching edges and texture rather than only
intensities, which MSE alone blurs. A volume goes through the 2D network slice by slice along each of its three axes
("2.5D").
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.models.vgg import cfgs, make_layers

from mrisr.errors import InputError

#: conv layer name -> index of that conv in ``torchvision.models.vgg16().features`` (its ReLU follows at +1)
VGG16_CONV = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
              "conv4_1": 17, "conv4_2": 19, "conv4_3": 21, "conv5_1": 24, "conv5_2": 26, "conv5_3": 28}
#: How each weight set expects a grey image ``g`` in [0, 1] (repeated on 3 channels) to be fed in.
NORMALIZATIONS = {
    "imagenet": {"scale": 1.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},  # torchvision, RGB
    "caffe": {"scale": 255.0, "mean": (103.939, 116.779, 123.68), "std": (1.0, 1.0, 1.0)},  # Oxford/caffe, BGR 0-255
}
WEIGHTS_ENV = "MRISR_VGG16_WEIGHTS"
NORMALIZATION_ENV = "MRISR_VGG16_NORMALIZATION"


def vgg16_state_dict(weights: str | Path) -> tuple[dict, str]:
    """``(state_dict of features.*, default normalisation)`` for ``weights``: ``"imagenet"`` (torchvision's
    ImageNet weights, downloaded once into ``$TORCH_HOME/hub/checkpoints``), or a path to a saved state dict."""
    if str(weights) == "imagenet":
        try:
            state = torch.hub.load_state_dict_from_url(VGG16_Weights.IMAGENET1K_V1.url, progress=False, check_hash=True)
        except (urllib.error.URLError, OSError) as err:
            raise InputError(VGG16_Weights.IMAGENET1K_V1.url, f"cannot download the VGG16 ImageNet weights ({err}); "
                             f"offline, pass weights=PATH to a VGG16 state dict (such as "
                             f"vgg16_features_block1-3.pth) or set {WEIGHTS_ENV}=PATH") from None
        return {k: v for k, v in state.items() if k.startswith("features.")}, "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise InputError(path, "VGG16 weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (torch raises many types for damaged files)
        raise InputError(path, f"cannot be read as a PyTorch state dict ({type(err).__name__}: {err})") from None
    state = {(k if k.startswith("features.") else f"features.{k}"): v for k, v in state.items()}
    return state, None


class VGG16Features(nn.Module):
    """The first layers of VGG16 up to the deepest of ``layers``, frozen and in eval mode.

    ``forward(x)`` takes grey images ``(N, 1, H, W)`` with intensities in [0, 1], repeats them on 3 channels,
    normalises them as ``normalization`` says the weights expect, and returns the ReLU outputs of ``layers``.
    """

    def __init__(self, layers, weights, normalization: str | None = None):
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_CONV]
        if unknown:
            raise ValueError(f"unknown VGG16 layers {unknown}; choose from {', '.join(VGG16_CONV)}")
        self.layers = tuple(layers)
        depth = max(VGG16_CONV[name] for name in self.layers) + 2  # through that layer's ReLU
        self.features = make_layers(cfgs["D"])[:depth]
        if str(weights) == "random":
            normalization = normalization or "imagenet"
        else:
            state, default = vgg16_state_dict(weights)
            normalization = normalization or default
            if normalization is None:
                raise InputError(weights, "say how these VGG16 weights expect their input: normalization='caffe' "
                                 "(Oxford/caffe weights: BGR, 0-255, mean subtracted) or 'imagenet' (torchvision: "
                                 f"0-1, mean/std), or set {NORMALIZATION_ENV}")
            wanted = self.features.state_dict()
            missing = [k for k in wanted if f"features.{k}" not in state]
            if missing:
                raise InputError(weights, f"has no weights for {missing[:3]} (needed for layers {self.layers})")
            self.features.load_state_dict({k: state[f"features.{k}"] for k in wanted})
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {list(NORMALIZATIONS)}, got {normalization!r}")
        self.normalization = normalization
        norm = NORMALIZATIONS[normalization]
        self.register_buffer("scale", torch.tensor(norm["scale"]))
        self.register_buffer("mean", torch.tensor(norm["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(norm["std"]).view(1, 3, 1, 1))
        self.input_gain = float(self.scale / self.std.mean())  # network input units per unit of grey intensity
        # the ReLU after each wanted conv, by its index in the Sequential (torchvision's FX feature extraction)
        self.features = create_feature_extractor(self.features, {str(VGG16_CONV[name] + 1): name
                                                                 for name in self.layers})
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # always eval: frozen statistics (VGG16 has no batch norm, but stay explicit)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x.expand(-1, 3, -1, -1) * self.scale - self.mean) / self.std
        taps = self.features(x)
        return [taps[name] for name in self.layers]


class PerceptualLoss(nn.Module):
    """VGG16 feature distance between ``pred`` and ``target``, 2D ``(N, 1, H, W)`` or 3D ``(N, 1, D, H, W)``.

    Args:
        layers: VGG16 conv layers whose (ReLU) activations are compared; default the first three, as seed 000.
        layer_weights: weight of each layer's mean squared feature difference (default 1 each).
        weights: ``"imagenet"`` (torchvision, downloaded and cached), a path to a state dict with torchvision's key
            names (e.g. ``vgg16_features_block1-3.pth``), or ``"random"`` (only when asked for by name). Default:
            ``$MRISR_VGG16_WEIGHTS`` if set, else ``"imagenet"``.
        normalization: ``"imagenet"`` or ``"caffe"``: how the weights expect input (see `NORMALIZATIONS`); default
            ``$MRISR_VGG16_NORMALIZATION``, else ``"imagenet"`` for torchvision's weights. A file must say.
        slices_per_axis: 3D only: use this many random slices along each axis per call (``None``: all slices).

    Intensities are expected in [0, 1] (the normalised training scale). Feature differences are divided by the
    normalisation's input gain (255 for caffe, about 4.4 for imagenet), so the loss is in squared units of that
    intensity scale and a ``perceptual_weight`` means about the same for either weight set. Volumes: the loss is
    the mean over the three axes of the 2D loss over slices along that axis (2.5D).
    """

    def __init__(self, layers=("conv1_1", "conv1_2", "conv2_1"), layer_weights=None, weights=None,
                 normalization: str | None = None, slices_per_axis: int | None = None):
        super().__init__()
        weights = weights or os.environ.get(WEIGHTS_ENV) or "imagenet"
        normalization = normalization or os.environ.get(NORMALIZATION_ENV) or None
        self.vgg = VGG16Features(layers, weights, normalization)
        self.layer_weights = tuple(layer_weights or [1.0] * len(layers))
        if len(self.layer_weights) != len(layers):
            raise ValueError(f"{len(self.layer_weights)} layer_weights for {len(layers)} layers")
        self.slices_per_axis = slices_per_axis

    def loss_2d(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        features = self.vgg(torch.cat([pred, target]))
        n = pred.shape[0]
        return self.feature_loss([f[:n] for f in features], [f[n:] for f in features])

    def feature_loss(self, pred_features, target_features) -> torch.Tensor:
        """The loss between VGG features already computed (``self.vgg`` of 2D images), so that one target's
        features serve several predictions."""
        gain2 = self.vgg.input_gain**2
        return sum(w * F.mse_loss(p, t) / gain2 for w, p, t in zip(self.layer_weights, pred_features,
                                                                     target_features))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.shape[1] != 1 or pred.ndim not in (4, 5):
            raise ValueError(f"PerceptualLoss takes matching (N, 1, H, W) or (N, 1, D, H, W) tensors, got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        pred, target = pred.float(), target.float()
        if pred.ndim == 4:
            return self.loss_2d(pred, target)
        total = 0.0
        for axis in (2, 3, 4):
            index = None
            if self.slices_per_axis and self.slices_per_axis < pred.shape[axis]:
                index = torch.randperm(pred.shape[axis], device=pred.device)[: self.slices_per_axis]
            total = total + self.loss_2d(*(as_slices(v, axis, index) for v in (pred, target)))
        return total / 3


def as_slices(volume: torch.Tensor, axis: int, index: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, 1, D, H, W)`` -> the 2D slices perpendicular to ``axis`` (2, 3 or 4) as a batch ``(N * k, 1, a, b)``."""
    if index is not None:
        volume = volume.index_select(axis, index)
    moved = volume.movedim(axis, 2)
    n, c, k, a, b = moved.shape
    return moved.transpose(1, 2).reshape(n * k, c, a, b)


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, epsilon: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((pred - target)^2 + epsilon^2)``: L1 with a smooth minimum (Charbonnier et al., ICIP 1994;
    LapSRN, Lai et al. 2017). ``epsilon`` in units of the normalised intensity."""
    return torch.sqrt((pred - target) ** 2 + epsilon**2).mean()


#: The pixel term of `SRLoss` by name: MSE (the seeds'), L1 (what EDSR trains with) or Charbonnier.
PIXEL_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss, "charbonnier": charbonnier_loss}


class SRLoss(nn.Module):
    """``pixel + perceptual_weight * perceptual``, ``pixel`` one of `PIXEL_LOSSES` (default MSE); the last batch's
    terms are kept in ``self.terms`` for logging, under the pixel loss's name and ``"perceptual"``."""

    def __init__(self, perceptual: PerceptualLoss | None = None, perceptual_weight: float = 0.0, pixel: str = "mse"):
        super().__init__()
        if perceptual_weight and perceptual is None:
            raise ValueError("perceptual_weight > 0 needs a PerceptualLoss")
        if pixel not in PIXEL_LOSSES:
            raise ValueError(f"pixel loss must be one of {list(PIXEL_LOSSES)}, got {pixel!r}")
        self.perceptual, self.perceptual_weight = perceptual, float(perceptual_weight)
        self.pixel = pixel
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, pred, target):
        pixel = PIXEL_LOSSES[self.pixel](pred.float(), target.float())
        self.terms = {self.pixel: pixel.detach()}
        if not self.perceptual_weight:
            return pixel
        perceptual = self.perceptual(pred, target)
        self.terms["perceptual"] = perceptual.detach()
        return pixel + self.perceptual_weight * perceptual
