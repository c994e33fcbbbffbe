"""Super-resolution networks: `EDSR3D` (knee, seed 000), `SRResNet2D` (cardiac, seed 001) and `EDSR2D`
(self-supervised through-plane super-resolution, `mrisr.inference.selfsr`).

All take and return ``(batch, channels, *spatial)`` tensors of normalised intensity, 1 channel by default; spatial
axes are ``(D, H, W)`` = (slice, row, column) in 3D and ``(H, W)`` in 2D. All are fully convolutional: trained on
patches, they run on volumes of any size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLERS = ("pixelshuffle", "nearest", "transposed")


def _conv(ndim: int, c_in: int, c_out: int, kernel: int = 3) -> nn.Module:
    return (nn.Conv2d if ndim == 2 else nn.Conv3d)(c_in, c_out, kernel, padding=kernel // 2)


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, scaled by ``res_scale`` and added to the input (EDSR: no batch norm)."""

    def __init__(self, ndim: int, n_feats: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(_conv(ndim, n_feats, n_feats), nn.ReLU(inplace=True), _conv(ndim, n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.body(x)


def pixel_shuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Sub-pixel rearrangement in 2D or 3D: ``(B, C * scale^n, *S) -> (B, C, *(S * scale))`` (Shi et al. 2016)."""
    ndim = x.ndim - 2
    b, c, *size = x.shape
    c_out = c // scale**ndim
    x = x.reshape(b, c_out, *[scale] * ndim, *size)
    # (b, c, s1..sn, d1..dn) -> (b, c, d1, s1, ..., dn, sn)
    order = [0, 1] + [p for k in range(ndim) for p in (2 + ndim + k, 2 + k)]
    return x.permute(order).reshape(b, c_out, *[d * scale for d in size])


def icnr_(weight: torch.Tensor, scale: int) -> torch.Tensor:
    """ICNR initialisation (Aitken et al. 2017) of a conv feeding `pixel_shuffle`: every group of ``scale^n`` output
    channels gets the same kernel, so the initial result equals nearest-neighbour resize then conv (no checkerboard)."""
    ndim = weight.ndim - 2
    c_out = weight.shape[0] // scale**ndim
    sub = torch.empty(c_out, *weight.shape[1:])
    nn.init.kaiming_normal_(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale**ndim, dim=0))
    return weight


class Upsample2x(nn.Module):
    """One x2 upscaling block followed by ReLU.

    ``"transposed"``: a transposed conv (kernel 4, stride 2): learnable, but its kernel taps alternate between output
    positions, the classic source of checkerboard artefacts (Odena et al. 2016). ``"nearest"``: nearest-neighbour
    resize, then a conv. ``"pixelshuffle"``: a conv to ``2^n`` times the channels, then `pixel_shuffle`,
    ICNR-initialised.
    """

    def __init__(self, ndim: int, n_feats: int, kind: str):
        super().__init__()
        if kind not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {kind!r}")
        self.kind = kind
        if kind == "transposed":
            self.conv = (nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d)(n_feats, n_feats, 4, 2, 1)
        elif kind == "nearest":
            self.conv = _conv(ndim, n_feats, n_feats)
        else:
            self.conv = _conv(ndim, n_feats, n_feats * 2**ndim)
            icnr_(self.conv.weight, 2)
            nn.init.zeros_(self.conv.bias)  # one bias per sub-pixel group too, or the groups differ

    def forward(self, x):
        if self.kind == "nearest":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv(x)
        return F.relu(pixel_shuffle(x, 2) if self.kind == "pixelshuffle" else x)


def _upsampler(ndim: int, n_feats: int, scale: int, kind: str) -> nn.Module:
    if scale == 1:
        return nn.Identity()
    if scale & (scale - 1):
        raise ValueError(f"scale must be 1 or a power of 2, got {scale}")
    return nn.Sequential(*[Upsample2x(ndim, n_feats, kind) for _ in range(scale.bit_length() - 1)])


def fold_axis0(x: torch.Tensor, fold: int) -> torch.Tensor:
    """Space-to-depth along spatial axis 0 only: ``(B, C, D * fold, ...) -> (B, C * fold, D, ...)``, channel
    ``c * fold + r`` holding rows ``fold * i + r``."""
    b, c, d, *rest = x.shape
    return x.reshape(b, c, d // fold, fold, *rest).transpose(2, 3).reshape(b, c * fold, d // fold, *rest)


def unfold_axis0(x: torch.Tensor, fold: int) -> torch.Tensor:
    """The inverse of `fold_axis0`: ``(B, C * fold, D, ...) -> (B, C, D * fold, ...)``."""
    b, c, d, *rest = x.shape
    return x.reshape(b, c // fold, fold, d, *rest).transpose(2, 3).reshape(b, c // fold, d * fold, *rest)


class _SRNet(nn.Module):
    """head conv -> residual blocks -> body conv (+ long skip) -> upsampler -> tail conv (+ optional global skip).

    ``fold > 1`` folds spatial axis 0 into channels (`fold_axis0`) before the head and back after the tail: the body
    runs on a grid ``fold`` times coarser along that axis (``fold`` times less compute, a receptive field ``fold``
    times longer along it). For an input interpolated onto a grid ``fold`` times finer along axis 0
    (`mrisr.inference.selfsr`: the scan's slices, cubic-interpolated), the body then works on the scan's own slice grid;
    the input's axis 0 must be a multiple of ``fold``, and its phase (where the original samples fall among the ``fold``
    rows) must be the one it was trained on.
    """

    def __init__(self, ndim, in_channels, out_channels, n_feats, n_blocks, res_scale, scale, upsampler, global_skip,
                 fold=1):
        super().__init__()
        self.ndim, self.scale, self.global_skip, self.fold = ndim, scale, global_skip, int(fold)
        if global_skip and in_channels != out_channels:
            raise ValueError("global_skip needs in_channels == out_channels")
        if self.fold < 1 or self.fold > 1 and scale != 1:
            raise ValueError(f"fold must be an integer >= 1, and 1 with an upsampling scale; got fold {fold}, scale "
                             f"{scale}")
        in_channels, out_channels = in_channels * self.fold, out_channels * self.fold
        self.head = _conv(ndim, in_channels, n_feats)
        self.body = nn.Sequential(*[ResBlock(ndim, n_feats, res_scale) for _ in range(n_blocks)],
                                  _conv(ndim, n_feats, n_feats))
        self.upsample = _upsampler(ndim, n_feats, scale, upsampler)
        self.tail = _conv(ndim, n_feats, out_channels)
        if global_skip:  # start as the identity (the interpolation baseline) and learn only what it misses
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def receptive_radius(self) -> float:
        """How far (in input voxels) an output voxel sees: every 3x3(x3) conv adds one voxel at its own resolution,
        so convs after an x2 stage add half as much; upsampling itself adds up to half an input voxel per stage.
        With ``fold``, along axis 0 it is ``fold`` times that (plus the fold itself); the longest is returned."""
        n_blocks = len(self.body) - 1
        radius, step = 1 + 2 * n_blocks + 1, 1.0  # head conv, 2 convs per block, the body's last conv
        for block in self.upsample if self.scale > 1 else []:
            radius += (step / 2 if block.kind == "nearest" else step) + step / 2
            step /= 2
        return (radius + step) * self.fold + self.fold - 1  # tail conv

    def forward(self, x):
        if self.fold > 1:
            if x.shape[2] % self.fold:
                raise ValueError(f"input axis 0 has {x.shape[2]} samples; a network with fold {self.fold} needs a "
                                 f"multiple of {self.fold}: crop or pad it")
            return unfold_axis0(self._forward(fold_axis0(x, self.fold)), self.fold)
        return self._forward(x)

    def _forward(self, x):
        features = self.head(x)
        out = self.tail(self.upsample(features + self.body(features)))
        if not self.global_skip:
            return out
        if self.scale == 1:
            return x + out
        mode = "bilinear" if self.ndim == 2 else "trilinear"
        return F.interpolate(x, scale_factor=self.scale, mode=mode, align_corners=False) + out


class EDSR3D(_SRNet):
    """3D EDSR (Lim et al. 2017) for volumes: seed 000's knee network.

    ``n_blocks`` residual blocks of two 3x3x3 convs of ``n_feats`` channels, no batch norm, a long skip around the
    body, and a global skip from the input so the network learns the missing detail only. ``scale=1`` (default)
    keeps the grid (input already on the high-resolution grid, e.g. k-space zero-filled); an integer power of 2 adds
    x2 upsampling blocks (``upsampler``: ``"pixelshuffle"`` 3D sub-pixel, ``"nearest"`` resize-conv, ``"transposed"``)
    and the global skip is then the trilinearly upsampled input. The output conv starts at zero, so an untrained
    network returns its (upsampled) input: training starts from the interpolation baseline.

    Parameters at the defaults (1 channel, 64 features, 9 blocks): 2,105,985 (about 2.1 M). Compute: about 2.1 M
    multiply-adds (4.2 MFLOP) per voxel forward.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_feats: int = 64, n_blocks: int = 9,
                 res_scale: float = 1.0, scale: int = 1, upsampler: str = "pixelshuffle", global_skip: bool = True):
        super().__init__(3, in_channels, out_channels, n_feats, n_blocks, res_scale, scale, upsampler, global_skip)


class SRResNet2D(_SRNet):
    """2D x4 super-resolution network of seed 001 (cardiac): 4 residual blocks, then 2 x2 upscaling blocks.

    Residual blocks of two 3x3 convs of ``n_feats`` channels, no batch norm (as EDSR), a long skip around the body,
    then ``log2(scale)`` upscaling blocks of kind ``upsampler`` (``"transposed"``, ``"nearest"`` resize-conv or
    ``"pixelshuffle"``) and a 3x3 output conv. No global skip by default, so the upsampler alone makes the output
    grid, and its artefacts show.

    Parameters at the defaults (1 channel, 64 features, 4 blocks, x4): 407,425 with ``"nearest"``, 464,769 with
    ``"transposed"``, 628,993 with ``"pixelshuffle"``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_feats: int = 64, n_blocks: int = 4,
                 scale: int = 4, upsampler: str = "nearest", res_scale: float = 1.0, global_skip: bool = False):
        super().__init__(2, in_channels, out_channels, n_feats, n_blocks, res_scale, scale, upsampler, global_skip)


class EDSR2D(_SRNet):
    """2D EDSR (Lim et al. 2017): `EDSR3D` with 3x3 convs, for images ``(B, C, H, W)``.

    Same-grid by default (``scale=1``): the input is already interpolated onto the output grid and the network, which
    starts as the identity (zero output conv, global skip), learns the detail interpolation misses. The
    through-plane network of `mrisr.inference.selfsr`, there with ``fold`` the slice factor (`_SRNet`): image rows
    folded into channels, so that the body runs on the scan's own slice grid. Parameters at 64 features and 16 blocks:
    1,219,841.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_feats: int = 64, n_blocks: int = 16,
                 res_scale: float = 1.0, scale: int = 1, upsampler: str = "pixelshuffle", global_skip: bool = True,
                 fold: int = 1):
        super().__init__(2, in_channels, out_channels, n_feats, n_blocks, res_scale, scale, upsampler, global_skip,
                         fold)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
