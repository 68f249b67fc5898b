"""ViT -> multi-level features: four block outputs resampled to strides 4, 8, 16, 32.

A plain ViT has a single scale (the patch grid, stride 16 for /16 models), while UperNet wants a
ResNet-like pyramid. As in the MAE paper's transfer (A.3, A.4) and the released BEiT/MAE
segmentation code, the blocks are divided into 4 groups, the output of the last block of each
group is taken, and the four maps are resampled: 4x up (two stride-2 deconvolutions with
BatchNorm + GELU between), 2x up (one deconvolution), identity, 2x down (max-pool).

Factors are relative to the patch grid, so a /16 model gets strides 4, 8, 16, 32 exactly; other
patch sizes get the nearest power-of-two factors (a /4 CPU model: 1, 1/2, 1/4, 1/8 of its grid).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

STRIDES = (4, 8, 16, 32)


def default_out_indices(depth: int) -> list[int]:
    """Last block of each of 4 equal groups: 12 blocks -> [2, 5, 8, 11]. (The released MAE/BEiT
    configs tap [3, 5, 7, 11] for ViT-B and [7, 11, 15, 23] for ViT-L; the protocol file sets
    those per architecture.)"""
    if depth < 4:
        raise ValueError(f"a ViT with {depth} blocks cannot feed a 4-level pyramid")
    return [depth * (i + 1) // 4 - 1 for i in range(4)]


def rescale_factor(patch_size: int, stride: int) -> float:
    """The power of two nearest to patch_size / stride: /16 -> 4, 2, 1, 0.5; /14 -> the same."""
    return 2.0 ** round(math.log2(patch_size / stride))


def _resample(dim: int, factor: float) -> nn.Module:
    if factor == 1:
        return nn.Identity()
    if factor < 1:
        k = int(round(1 / factor))
        return nn.MaxPool2d(kernel_size=k, stride=k, ceil_mode=True)   # ceil: tiny inputs keep 1 cell
    layers: list[nn.Module] = []
    for i in range(int(round(math.log2(factor)))):
        if i:
            layers += [nn.BatchNorm2d(dim), nn.GELU()]
        layers.append(nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class MultiLevelNeck(nn.Module):
    """4 maps [B, D, h, w] on the patch grid -> 4 maps [B, D, h*f_i, w*f_i], f = rescale factors."""

    def __init__(self, dim: int, patch_size: int, strides=STRIDES):
        super().__init__()
        self.factors = [rescale_factor(patch_size, s) for s in strides]
        self.strides = [patch_size / f for f in self.factors]    # effective strides in pixels
        self.levels = nn.ModuleList(_resample(dim, f) for f in self.factors)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.levels):
            raise ValueError(f"neck expects {len(self.levels)} feature maps, got {len(features)}")
        return [level(x) for level, x in zip(self.levels, features)]
