"""ViT -> multi-scale feature maps for Mask R-CNN: the backbone + neck half of the detector.

The pyramid itself is the shared one (tasks/pyramid.py): `--neck vit-fpn` is the MAE paper's
A.3 (4 block groups, taps="groups"), `--neck simple-pyramid` is ViTDet's simple feature pyramid
(the last block, taps="last") on the plain global-attention ViT; both with LayerNorm between
deconvolutions. `--neck vitdet` is ViTDet as published (window attention, relative position
bias, its own pyramid and heads): tasks/coco/vitdet.py, not this module. Both feed
torchvision's FeaturePyramidNetwork (lateral 1x1 + top-down + 3x3 convs, plus a max-pooled P6
for the RPN), so the two differ only in where the four maps come from.

Layout: `ViTDetBackbone` = `vit` (the timm encoder, parameters named `vit.*` so that layer-wise
lr decay finds them) + `neck` (the FeaturePyramid) + `fpn`.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maebench.errors import MaebenchError, unknown
from maebench.tasks.pyramid import STRIDES, FeaturePyramid, prune_for_taps, tap_indices

# --neck value -> the pyramid's taps
NECKS = {"vit-fpn": "groups", "simple-pyramid": "last",
         "vitdet": "last"}     # ViTDet as published: its own encoder, pyramid and heads (tasks/coco/vitdet.py)


def _check_patch(patch_size: int) -> int:
    """The stride of the maps the pyramid resamples: the patch when it is a power of two; otherwise
    16, the ViT's maps being resized bilinearly to the canvas's stride-16 grid first, so that the
    levels sit at exactly 4, 8, 16, 32. `maebench run` never hands this module a patch 14: its
    patch rule resamples the patch embedding to 16 first (tasks/pyramid.py); a patch-14 ViT built
    directly (at a canvas that is a multiple of 14 and 32, e.g. 224) still runs this way."""
    if patch_size < 1 or patch_size > 64:
        raise MaebenchError(f"a detection backbone needs a patch size from 1 to 64 (got {patch_size})")
    return patch_size if not patch_size & (patch_size - 1) else 16


class ViTDetBackbone(nn.Module):
    """A torchvision detection backbone: images [B, 3, H, W] -> OrderedDict of FPN maps
    '0'..'3' at strides 4..32 and 'pool' at 64, each [B, out_channels, H/s, W/s].

    The ViT runs on a fixed square canvas (ViTDet's `square_pad`): inputs smaller than it are
    zero-padded (zero = the mean colour after normalisation), so the position embeddings are
    interpolated once, at load time, to the canvas grid, and any timm ViT (including BEiT with
    relative position bias) works without dynamic resizing. The maps are then cropped back to
    the input's extent, because torchvision's anchor generator derives each level's stride
    from the padded batch size divided by the map size."""

    def __init__(self, vit: nn.Module, *, neck: str, canvas: int, fpn_channels: int = 256, tap_norm: bool = False):
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
        self.map_stride = _check_patch(patch)
        self.indices = tap_indices(len(vit.blocks), NECKS[neck])
        prune_for_taps(vit, self.indices)
        self.vit = vit
        self.patch_size, self.canvas, self.neck_name = patch, canvas, neck
        self.neck = FeaturePyramid(vit.embed_dim, self.map_stride, taps=NECKS[neck], norm="layer", tap_norm=tap_norm)
        self.fpn = FeaturePyramidNetwork(self.neck.out_channels, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels    # read by torchvision's MaskRCNN

    def vit_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, 3, H, W] (H, W <= canvas) -> the chosen blocks' outputs, each [B, D, H/s, W/s]
        (s = the patch, or 16 for a patch that is not a power of two)."""
        h, w = x.shape[-2:]
        if h > self.canvas or w > self.canvas:
            raise MaebenchError(f"image batch {h}x{w} is larger than the {self.canvas} px detection canvas")
        x = F.pad(x, (0, self.canvas - w, 0, self.canvas - h))
        maps = self.vit.forward_intermediates(x, indices=self.indices, norm=False, output_fmt="NCHW",
                                              intermediates_only=True)
        if self.map_stride != self.patch_size:   # patch 14: onto the canvas's stride-16 grid
            side = self.canvas // self.map_stride
            maps = [F.interpolate(m, size=(side, side), mode="bilinear", align_corners=False) for m in maps]
        gh, gw = -(-h // self.map_stride), -(-w // self.map_stride)
        return [m[..., :gh, :gw] for m in maps]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        h, w = x.shape[-2:]
        levels = self.neck(self.vit_maps(x))
        # crop each level to ceil(input / stride): max-pooling the canvas-sized map can leave
        # one extra row or column when the input is not a multiple of the stride
        levels = [m[..., :-(-h // s), :-(-w // s)] for m, s in zip(levels, STRIDES)]
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(levels)))
