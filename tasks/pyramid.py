"""The one ViT feature pyramid, shared by COCO (Mask R-CNN + FPN) and ADE20K (UperNet).

A plain ViT has a single scale (its patch grid, stride p) while FPN and UperNet want a
ResNet-like pyramid at strides 4, 8, 16, 32. Two ways of building it:

  taps="groups"  the MAE paper's A.3 / A.4 (official MAE and BEiT transfer code): the blocks are
                 split into 4 groups and the last block of each is tapped; tap i is resampled
                 to stride 4, 8, 16, 32 (for p = 16: two 2x deconvolutions, one, identity, 2x
                 max-pool), channels kept.
  taps="last"    ViTDet's simple feature pyramid (Li et al. 2022): the last block only,
                 resampled to scales 4, 2, 1, 0.5, channels halved per 2x upsampling.

With tap_norm, each tapped block output first goes through a LayerNorm of its own (as Swin's
detection and segmentation backbones norm each output they hand to the neck; the MAE and BEiT
transfer code reads the raw residual stream). A pretrained stream's scale and offsets differ from
block to block and from a random ViT's; the norm hands the neck maps of one scale.

Between two deconvolutions sits a norm + GELU: LayerNorm over channels (ViTDet; independent of
the per-GPU batch, often 1 image at detection resolution) or BatchNorm (the MAE/BEiT
segmentation code). Factors are the power of two nearest p / stride, so any patch works
(p = 4, the CPU-scale models: 1, 1/2, 1/4, 1/8; p = 14: as for 16).

The patch rule (COCO, every neck, and ADE20K): a ViT whose patch is not a power of two (14:
DINOv2, EVA-02, CLIP ViT-L/14, MAE ViT-H/14) and does not divide the canvas / crop runs with its
patch embedding resampled to the nearest power of two, 16 (`pyramid_patch`; backbones/build.py
`resample_patch_embed`), as detectron2's ViTDet-H does (mae_pretrain_vit_huge_p14to16): the
protocols' 1024 px canvas and 512 px crop are then whole grids (64 x 64, 32 x 32 tokens) and
the levels sit at strides 4..32 exactly. The task records it in its config as `patch_rule`
(`apply_patch_rule`); a patch that divides the canvas (a power of two at the defaults, or 14 on a
224 canvas or a 56 crop) runs as it is and its config has no such key.

The tap rule: block floor(depth * (i + 1) / 4) - 1 for i = 0..3, in integer arithmetic (no
round-half-to-even surprises); it is the official [2, 5, 8, 11] / [5, 11, 17, 23] /
[7, 15, 23, 31] of ViT-B / L / H whenever 4 divides the depth.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from maebench.errors import MaebenchError, unknown

STRIDES = (4, 8, 16, 32)
TAPS = ("groups", "last")
NORMS = ("layer", "batch")


def tap_indices(depth: int, taps: str = "groups") -> list[int]:
    """Blocks whose outputs the pyramid reads: 12 blocks -> [2, 5, 8, 11] (groups) or [11] (last)."""
    if taps not in TAPS:
        raise unknown("pyramid taps", taps, TAPS)
    if taps == "last":
        return [depth - 1]
    if depth < 4:
        raise MaebenchError(f"a 4-level pyramid taps 4 block groups; this ViT has only {depth} blocks")
    return [depth * (i + 1) // 4 - 1 for i in range(4)]


def pyramid_patch(patch_size: int) -> int:
    """The patch a dense task runs a ViT at: itself when a power of two, else the nearest power
    of two (14 -> 16), its patch embedding resampled (module docstring)."""
    return patch_size if not patch_size & (patch_size - 1) else 2 ** round(math.log2(patch_size))


def apply_patch_rule(cfg: dict, patch_size: int, side: int) -> int:
    """The patch the task runs at on a `side`-px canvas or crop; where it differs from the
    backbone's, cfg gains `patch_rule: resample-14-to-16` (part of the run's recipe, hence of its
    id). A patch that divides `side` leaves cfg as it was."""
    run = patch_size if isinstance(side, int) and side % patch_size == 0 else pyramid_patch(patch_size)
    if run != patch_size:
        cfg["patch_rule"] = f"resample-{patch_size}-to-{run}"
    return run


def run_patch(cfg: dict, patch_size: int) -> int:
    """The patch a config built by `apply_patch_rule` runs the backbone at (the backbone's own
    patch when the config has no `patch_rule`)."""
    return pyramid_patch(patch_size) if cfg.get("patch_rule") else patch_size


def describe_patch(patch_size: int, run_patch: int) -> str:
    """'patch 16' or 'patch 14 resampled to 16' for a task's log line."""
    return f"patch {patch_size}" + (f" resampled to {run_patch} (patch_rule)" if run_patch != patch_size else "")


def rescale_factor(patch_size: int, stride: int) -> float:
    """The power of two nearest to patch_size / stride: /16 -> 4, 2, 1, 0.5; /14 -> the same."""
    return 2.0 ** round(math.log2(patch_size / stride))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def resample(dim: int, factor: float, *, norm: str, halve_channels: bool) -> tuple[nn.Module, int]:
    """A module taking [B, dim, h, w] to [B, out, h * factor, w * factor], and out.

    factor > 1: log2(factor) stride-2 deconvolutions with norm + GELU between them; 1: identity;
    < 1: max-pooling with kernel = stride = 1 / factor (ceil mode: tiny inputs keep one cell)."""
    if factor == 1:
        return nn.Identity(), dim
    if factor < 1:
        k = round(1 / factor)
        return nn.MaxPool2d(kernel_size=k, stride=k, ceil_mode=True), dim
    layers: list[nn.Module] = []
    for i in range(round(math.log2(factor))):
        if i:
            layers += [LayerNorm2d(dim) if norm == "layer" else nn.BatchNorm2d(dim), nn.GELU()]
        out = dim // 2 if halve_channels else dim
        layers.append(nn.ConvTranspose2d(dim, out, kernel_size=2, stride=2))
        dim = out
    return nn.Sequential(*layers), dim


class FeaturePyramid(nn.Module):
    """Tapped block maps on the patch grid -> 4 maps at strides 4, 8, 16, 32.

    forward(maps): taps="groups": 4 x [B, D, h, w]; taps="last": [[B, D, h, w]]
                   -> 4 x [B, C_i, h * f_i, w * f_i] with f_i = rescale_factor(p, stride_i)."""

    def __init__(self, dim: int, patch_size: int, *, taps: str = "groups", norm: str = "layer",
                 halve_channels: bool | None = None, tap_norm: bool = False):
        super().__init__()
        if taps not in TAPS:
            raise unknown("pyramid taps", taps, TAPS)
        if norm not in NORMS:
            raise unknown("pyramid norm", norm, NORMS)
        self.taps = taps
        self.num_inputs = 4 if taps == "groups" else 1
        halve = taps == "last" if halve_channels is None else halve_channels
        self.factors = [rescale_factor(patch_size, s) for s in STRIDES]
        self.strides = [patch_size / f for f in self.factors]     # effective strides in pixels
        mods, self.out_channels = [], []
        for f in self.factors:
            mod, out = resample(dim, f, norm=norm, halve_channels=halve)
            mods.append(mod)
            self.out_channels.append(out)
        self.levels = nn.ModuleList(mods)
        self.tap_norms = nn.ModuleList(LayerNorm2d(dim, eps=1e-6) for _ in range(self.num_inputs)) if tap_norm else None

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != self.num_inputs:
            raise ValueError(f"the pyramid expects {self.num_inputs} feature maps, got {len(maps)}")
        if self.tap_norms is not None:
            maps = [n(x) for n, x in zip(self.tap_norms, maps)]
        if self.taps == "last":
            return [level(maps[-1]) for level in self.levels]
        return [level(x) for level, x in zip(self.levels, maps)]


def prune_for_taps(vit: nn.Module, indices: list[int]) -> None:
    """Drop what the pyramid never reads (blocks after the last tap, the final norm, the head)
    through timm's own `prune_intermediate_layers`, so every remaining parameter gets a gradient
    (DDP runs without find_unused_parameters)."""
    vit.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
