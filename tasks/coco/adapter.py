"""ViT -> multi-scale feature maps for Mask R-CNN: the backbone + neck half of the detector.

A plain ViT has one resolution (the patch stride p, 16 for the paper's models) while Mask R-CNN
with FPN wants a ResNet-like pyramid at strides 4, 8, 16, 32. Two adapters are offered:

  `vit-fpn`         the MAE paper's A.3 (as in the official MAE/BEiT detection code): the blocks
                    are split into 4 equal groups; group i's output is resampled to stride
                    4, 8, 16, 32 -- two 2x deconvolutions, one deconvolution, identity, 2x max-pool
                    when p = 16.
  `simple-pyramid`  ViTDet (Li et al. 2022): only the last block's map, resampled to scales
                    4, 2, 1, 0.5 (strides 4..32 when p = 16), channels halved per 2x upsampling.

Both feed torchvision's FeaturePyramidNetwork (lateral 1x1 + top-down + 3x3 convs, plus a
max-pooled P6 for the RPN), so the two differ only in where the four maps come from.

The resampling factor of each level is p / stride, so the same code serves any power-of-two
patch size (the CPU-scale vit-micro has p = 4: identity, 2x, 4x, 8x max-pool).

Layout: `ViTDetBackbone` = `vit` (the timm encoder, parameters named `vit.*` so that layer-wise
lr decay finds them) + `neck` (ViTFPNNeck or SimplePyramidNeck) + `fpn`.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maebench.errors import MaebenchError, unknown

NECKS = ("vit-fpn", "simple-pyramid")
STRIDES = (4, 8, 16, 32)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map. Used between deconvolutions instead of the
    official code's SyncBatchNorm: it does not depend on the per-GPU batch (1-2 images at
    detection resolution, often 1 on CPU) and needs no synchronisation under DDP, as in ViTDet."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def resample(in_dim: int, factor: float, halve_channels: bool) -> tuple[nn.Module, int]:
    """A module taking [B, in_dim, h, w] to [B, out_dim, h * factor, w * factor] and out_dim.

    factor > 1: log2(factor) stride-2 deconvolutions with LayerNorm + GELU between them (the
    MAE/BEiT `fpn1` for 4x, `fpn2` for 2x); factor == 1: identity; factor < 1: max-pooling with
    kernel = stride = 1/factor (the `fpn4` of the official code). `halve_channels` halves the
    width at each deconvolution (ViTDet); otherwise it is kept (MAE/BEiT)."""
    if factor == 1:
        return nn.Identity(), in_dim
    if factor < 1:
        k = round(1 / factor)
        return nn.MaxPool2d(kernel_size=k, stride=k, ceil_mode=True), in_dim
    layers, dim = [], in_dim
    for i in range(round(math.log2(factor))):
        if i:
            layers += [LayerNorm2d(dim), nn.GELU()]
        out = dim // 2 if halve_channels else dim
        layers.append(nn.ConvTranspose2d(dim, out, kernel_size=2, stride=2))
        dim = out
    return nn.Sequential(*layers), dim


def _check_patch(patch_size: int) -> None:
    if patch_size < 1 or patch_size & (patch_size - 1) or patch_size > 64:
        raise MaebenchError(f"a detection backbone needs a power-of-two patch size (got {patch_size}) so that "
                            f"its maps can be resampled to strides {STRIDES}; load it with patch_size=16")


class ViTFPNNeck(nn.Module):
    """MAE A.3: four maps (one per block group), map i resampled to stride STRIDES[i]."""

    def __init__(self, dim: int, patch_size: int):
        super().__init__()
        _check_patch(patch_size)
        self.num_inputs = 4
        mods, self.out_channels = [], []
        for stride in STRIDES:
            mod, out = resample(dim, patch_size / stride, halve_channels=False)
            mods.append(mod)
            self.out_channels.append(out)
        self.levels = nn.ModuleList(mods)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        # maps: 4 x [B, D, H/p, W/p] -> [B, D, H/4, W/4], ..., [B, D, H/32, W/32]
        return [level(x) for level, x in zip(self.levels, maps)]


class SimplePyramidNeck(nn.Module):
    """ViTDet: the last map resampled to strides 4, 8, 16, 32 (scales 4, 2, 1, 0.5 for p = 16)."""

    def __init__(self, dim: int, patch_size: int):
        super().__init__()
        _check_patch(patch_size)
        self.num_inputs = 1
        mods, self.out_channels = [], []
        for stride in STRIDES:
            mod, out = resample(dim, patch_size / stride, halve_channels=True)
            mods.append(mod)
            self.out_channels.append(out)
        self.levels = nn.ModuleList(mods)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        # maps: [[B, D, H/p, W/p]] -> [B, D/4, H/4, W/4], [B, D/2, H/8, W/8], [B, D, ...], [B, D, ...] (p = 16)
        return [level(maps[-1]) for level in self.levels]


def block_indices(depth: int, neck: str) -> list[int]:
    """Blocks whose outputs the neck reads: the last block of each of 4 equal groups
    (vit-fpn; e.g. 2, 5, 8, 11 for 12 blocks) or the last block only (simple-pyramid)."""
    if neck == "simple-pyramid":
        return [depth - 1]
    if depth < 4:
        raise MaebenchError(f"the vit-fpn neck splits the blocks into 4 groups; this ViT has only {depth}")
    return [round(depth * (i + 1) / 4) - 1 for i in range(4)]


class ViTDetBackbone(nn.Module):
    """A torchvision detection backbone: images [B, 3, H, W] -> OrderedDict of FPN maps
    '0'..'3' at strides 4..32 and 'pool' at 64, each [B, out_channels, H/s, W/s].

    The ViT runs on a fixed square canvas (ViTDet's `square_pad`): inputs smaller than it are
    zero-padded (zero = the mean colour after normalisation), so the position embeddings are
    interpolated once, at load time, to the canvas grid, and any timm ViT (including BEiT with
    relative position bias) works without dynamic resizing. The maps are then cropped back to
    the input's extent, because torchvision's anchor generator derives each level's stride
    from the padded batch size divided by the map size."""

    def __init__(self, vit: nn.Module, *, neck: str, canvas: int, fpn_channels: int = 256):
        super().__init__()
        if neck not in NECKS:
            raise unknown("neck", neck, NECKS)
        patch = vit.patch_embed.patch_size
        patch = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
        if canvas % 32 or canvas % patch:
            raise MaebenchError(f"detection canvas {canvas} px must be a multiple of 32 and of the patch size {patch}")
        grid = getattr(vit.patch_embed, "grid_size", None)
        if grid is not None and tuple(grid) != (canvas // patch, canvas // patch):
            raise MaebenchError(f"the ViT was built for a {tuple(grid)} patch grid, not the {canvas} px canvas; "
                                f"load it with img_size={canvas}")
        # The final norm and any head are unused here; dropping them keeps every parameter in the
        # loss graph, which DDP without find_unused_parameters requires.
        for name in ("norm", "fc_norm", "head", "head_drop"):
            if hasattr(vit, name):
                setattr(vit, name, nn.Identity())
        self.vit = vit
        self.patch_size, self.canvas, self.neck_name = patch, canvas, neck
        self.indices = block_indices(len(vit.blocks), neck)
        dim = vit.embed_dim
        self.neck = ViTFPNNeck(dim, patch) if neck == "vit-fpn" else SimplePyramidNeck(dim, patch)
        self.fpn = FeaturePyramidNetwork(self.neck.out_channels, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels    # read by torchvision's MaskRCNN

    def vit_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, 3, H, W] (H, W <= canvas) -> the chosen blocks' outputs, each [B, D, H/p, W/p]."""
        h, w = x.shape[-2:]
        if h > self.canvas or w > self.canvas:
            raise MaebenchError(f"image batch {h}x{w} is larger than the {self.canvas} px detection canvas")
        x = F.pad(x, (0, self.canvas - w, 0, self.canvas - h))
        maps = self.vit.forward_intermediates(x, indices=self.indices, norm=False, output_fmt="NCHW",
                                              intermediates_only=True)
        gh, gw = -(-h // self.patch_size), -(-w // self.patch_size)
        return [m[..., :gh, :gw] for m in maps]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        h, w = x.shape[-2:]
        levels = self.neck(self.vit_maps(x))
        # crop each level to ceil(input / stride): max-pooling the canvas-sized map can leave
        # one extra row or column when the input is not a multiple of the stride
        levels = [m[..., :-(-h // s), :-(-w // s)] for m, s in zip(levels, STRIDES)]
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(levels)))
