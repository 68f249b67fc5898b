"""ViTDet as published (Li, Mao, Girshick, He, "Exploring Plain Vision Transformer Backbones for
Object Detection", ECCV 2022; detectron2 projects/ViTDet, configs mask_rcnn_vitdet_{b,l,h}):
`maebench run --task coco --neck vitdet`. Written from the paper and from reading detectron2's
modeling/backbone/vit.py + utils.py; nothing is copied from it.

What differs from the plain timm ViT + shared pyramid of `--neck simple-pyramid`:
  - window attention (14 x 14 tokens) in every block except 4 global ones, one at the end of each
    quarter of the depth (B: 2, 5, 8, 11; L: 5, 11, 17, 23; H: 7, 15, 23, 31). The grid is
    zero-padded to a multiple of the window after norm1 and the padding takes part in attention
    unmasked, as detectron2 does;
  - decomposed relative position bias (MViTv2) in every block: per head-dim tables along height
    and width, (2 * window - 1) rows in windowed blocks, (2 * grid - 1) in global ones,
    zero-initialised (MAE weights have none) or read from a checkpoint and resized linearly;
  - the absolute position embedding stays at the pretraining grid (with its [cls] row, unused) and
    is resized bicubically at every forward; the [cls] token and the final norm are not used;
  - the simple feature pyramid: scales 4, 2, 1, 0.5 of the last block's map (deconvolutions with
    LayerNorm + GELU between them, channels halved per 2x), then on every level a 1x1 and a 3x3
    conv without bias, each followed by a LayerNorm over channels (eps 1e-6), and a stride-2
    max-pool of the last level (P6); no top-down FPN path.
Heads (tasks/coco/model.py): 2-conv RPN without norm, 4conv1fc box head and 4-conv mask head
with LayerNorm after each conv, RoIs pooled as detectron2's ROIAlignV2 (`AlignedRoIPool`).

Layout: `ViTDetBackbone.vit` = the encoder (parameters `vit.patch_embed.*`, `vit.pos_embed`,
`vit.blocks.N.*`, so layer-wise lr decay sees them as detectron2's get_vit_lr_decay_rate does),
`ViTDet.neck` = the pyramid.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchvision.ops import MultiScaleRoIAlign

from maebench.backbones.pos_embed import resize_pos_embed
from maebench.errors import MaebenchError
from maebench.grad_ckpt import run_blocks
from maebench.tasks.pyramid import STRIDES, LayerNorm2d, pyramid_patch, rescale_factor, tap_indices

WINDOW_SIZE = 14        # mask_rcnn_vitdet.py: window_size=14
LN_EPS = 1e-6           # detectron2.layers.LayerNorm's default, used by the pyramid and the heads
_REL_KEY = re.compile(r"(?:^|\.)blocks\.(\d+)\.attn\.rel_pos_([hw])$")


def global_blocks(depth: int) -> list[int]:
    """The blocks with global attention: the last of each quarter, [2, 5, 8, 11] for depth 12."""
    return tap_indices(depth, "groups")


def layer_norm_2d(channels: int) -> nn.Module:
    """LayerNorm over the channels of an NCHW map, eps 1e-6 (norm_layer of the heads)."""
    return LayerNorm2d(channels, eps=LN_EPS)


# ---- windows -----------------------------------------------------------------------------------
def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """[B, H, W, C] -> ([B * nh * nw, window, window, C], (Hp, Wp)): zero-pad the bottom and right
    to multiples of `window`, then cut row-major into windows (window (i, j) of image b at
    index b * nh * nw + i * nw + j)."""
    b, h, w, c = x.shape
    hp, wp = -(-h // window) * window, -(-w // window) * window
    x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    x = x.view(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int],
                       size: tuple[int, int]) -> torch.Tensor:
    """The inverse of window_partition, padding removed: -> [B, H, W, C]."""
    hp, wp = padded
    nh, nw = hp // window, wp // window
    x = windows.view(-1, nh, nw, window, window, windows.shape[-1]).transpose(2, 3)
    return x.reshape(-1, hp, wp, windows.shape[-1])[:, :size[0], :size[1]]


# ---- decomposed relative position bias -------------------------------------------------------
def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """[L, C] -> [length, C] by linear interpolation along L (identity when L == length)."""
    if table.shape[0] == length:
        return table
    return F.interpolate(table.t()[None], size=length, mode="linear")[0].t()


def rel_pos_lookup(table: torch.Tensor, size: int) -> torch.Tensor:
    """[2 * size - 1, C] -> [size (query), size (key), C], entry [q, k] = table[q - k + size - 1]."""
    table = resize_rel_pos(table, 2 * size - 1)
    idx = torch.arange(size, device=table.device)
    return table[idx[:, None] - idx[None, :] + size - 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention on a [B, H, W, C] map with decomposed relative position bias:
    logit(q, k) = q.k / sqrt(d) + q.Rh[qh - kh] + q.Rw[qw - kw] (the query unscaled in the bias).
    Reuses a timm Attention's `qkv` and `proj`, so checkpoint keys are unchanged."""

    def __init__(self, attn: nn.Module, size: tuple[int, int]):
        super().__init__()
        extra = [n for n in ("q_norm", "k_norm", "norm") if not isinstance(getattr(attn, n, nn.Identity()), nn.Identity)]
        if extra:
            raise MaebenchError(f"--neck vitdet needs plain ViT attention; this one has {extra}")
        self.qkv, self.proj = attn.qkv, attn.proj
        self.num_heads = attn.num_heads
        head_dim = attn.qkv.out_features // 3 // self.num_heads
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size[0] - 1, head_dim))   # zero init
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).view(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                     # each [B, heads, h*w, d]
        qg = q.reshape(b, self.num_heads, h, w, -1)
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", qg, rel_pos_lookup(self.rel_pos_h, h))
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", qg, rel_pos_lookup(self.rel_pos_w, w))
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


class ViTDetBlock(nn.Module):
    """A timm ViT block (norm1, attn, drop path, norm2, mlp; LayerScale if it has one) run on
    [B, H, W, C] with window (window > 0) or global attention."""

    def __init__(self, block: nn.Module, *, window: int, grid: tuple[int, int]):
        super().__init__()
        self.window = window
        self.norm1, self.norm2, self.mlp = block.norm1, block.norm2, block.mlp
        self.ls1, self.ls2 = block.ls1, block.ls2
        self.drop_path1, self.drop_path2 = block.drop_path1, block.drop_path2
        self.attn = WindowAttention(block.attn, (window, window) if window else grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window:
            h, w = y.shape[1:3]
            y, padded = window_partition(y, self.window)
            y = window_unpartition(self.attn(y), self.window, padded, (h, w))
        else:
            y = self.attn(y)
        x = x + self.drop_path1(self.ls1(y))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class ViTDetEncoder(nn.Module):
    """A timm VisionTransformer re-run as ViTDet's backbone: [B, 3, S, S] -> [B, D, S/p, S/p]."""

    def __init__(self, vit: nn.Module, *, canvas: int, window: int = WINDOW_SIZE,
                 global_indices: list[int] | None = None):
        super().__init__()
        from maebench.backbones.build import prefix_tokens, resample_patch_embed
        if not hasattr(vit, "blocks") or not hasattr(vit.blocks[0], "ls1") or getattr(vit, "pos_embed", None) is None:
            raise MaebenchError("--neck vitdet needs a plain ViT with absolute position embeddings "
                                "(a BEiT-style model is not one); use --neck vit-fpn")
        patch = vit.patch_embed.patch_size
        self.patch_size = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
        self.embed_dim = vit.embed_dim
        depth = len(vit.blocks)
        self.global_indices = sorted(global_blocks(depth) if global_indices is None else global_indices)
        if any(not 0 <= i < depth for i in self.global_indices):
            raise MaebenchError(f"ViTDet global blocks {self.global_indices} out of range for {depth} blocks")
        self.patch_embed = vit.patch_embed          # only .proj (and .norm) are used
        if pyramid_patch(self.patch_size) != self.patch_size:
            # ViT-H/14 -> 16 as ViTDet-H (detectron2 inits from mae_pretrain_vit_huge_p14to16.pth):
            # the one resampler every neck uses (backbones/build.py), so the maps sit at strides 4..32
            self.patch_size = pyramid_patch(self.patch_size)
            resample_patch_embed(vit, self.patch_size)
        grid = (canvas // self.patch_size, canvas // self.patch_size)
        self.pos_embed = vit.pos_embed              # [1, prefix + g*g, D], kept at the pretraining grid
        self.num_prefix = prefix_tokens(vit)
        self.blocks = nn.ModuleList(
            ViTDetBlock(b, window=0 if i in self.global_indices else window, grid=grid)
            for i, b in enumerate(vit.blocks))
        self.grad_checkpointing = False             # set_grad_checkpointing below

    def abs_pos(self, h: int, w: int) -> torch.Tensor:
        """The position embedding on an h x w grid, [1, h, w, D] (bicubic, no [cls] row)."""
        pos = self.pos_embed[:, self.num_prefix:]
        g = math.isqrt(pos.shape[1])
        # no antialias: the official ViTDet get_abs_pos
        pos = resize_pos_embed(pos, (h, w), num_prefix_tokens=0, old_grid=(g, g), antialias=False)
        return pos.reshape(1, h, w, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.norm(self.patch_embed.proj(x).permute(0, 2, 3, 1))     # [B, h, w, D]
        x = x + self.abs_pos(*x.shape[1:3])
        x = run_blocks(self, self.blocks, x)
        return x.permute(0, 3, 1, 2)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch, for this encoder's own block loop (maebench/grad_ckpt.py)."""
        self.grad_checkpointing = enable


def load_rel_pos(encoder: ViTDetEncoder, state: dict[str, torch.Tensor]) -> int:
    """Copy `blocks.N.attn.rel_pos_{h,w}` tables of a ViTDet / SAM-style checkpoint into the
    encoder, each resized linearly to the block's table length; returns how many were read.
    Blocks the state dict has no table for keep their zero init."""
    n = 0
    for key, table in state.items():
        m = _REL_KEY.search(key)
        if not m or int(m.group(1)) >= len(encoder.blocks):
            continue
        param = getattr(encoder.blocks[int(m.group(1))].attn, f"rel_pos_{m.group(2)}")
        if table.ndim != 2 or table.shape[1] != param.shape[1]:
            raise MaebenchError(f"{key}: relative position table {tuple(table.shape)} does not fit "
                                f"head dim {param.shape[1]}")
        with torch.no_grad():
            param.copy_(resize_rel_pos(table.float(), param.shape[0]))
        n += 1
    return n


# ---- simple feature pyramid ------------------------------------------------------------------
def _conv_ln(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), layer_norm_2d(cout)]


class SimpleFeaturePyramid(nn.Module):
    """[B, D, h, w] -> P2..P5 (scales 4, 2, 1, 0.5 for p = 16), each [B, out_channels, ...]."""

    def __init__(self, dim: int, patch_size: int, out_channels: int = 256):
        super().__init__()
        self.levels = nn.ModuleList()
        for stride in STRIDES:
            f = rescale_factor(patch_size, stride)
            layers: list[nn.Module] = []
            if f < 1:
                k = round(1 / f)
                layers.append(nn.MaxPool2d(kernel_size=k, stride=k, ceil_mode=True))
            cur = dim
            for i in range(round(math.log2(f)) if f > 1 else 0):
                if i:
                    layers += [layer_norm_2d(cur), nn.GELU()]
                layers.append(nn.ConvTranspose2d(cur, cur // 2, kernel_size=2, stride=2))
                cur //= 2
            layers += _conv_ln(cur, out_channels, 1) + _conv_ln(out_channels, out_channels, 3)
            self.levels.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [level(x) for level in self.levels]


class ViTDet(nn.Module):
    """A torchvision detection backbone: [B, 3, H, W] (H, W <= canvas) -> OrderedDict '0'..'3'
    (strides 4..32) and 'pool' (64), each [B, out_channels, ...]. Zero-pads to the square canvas
    (detectron2's square_pad) and crops each map back to the input's extent."""

    def __init__(self, vit: nn.Module, *, canvas: int, out_channels: int = 256, window: int = WINDOW_SIZE,
                 global_indices: list[int] | None = None):
        super().__init__()
        self.vit = ViTDetEncoder(vit, canvas=canvas, window=window, global_indices=global_indices)
        if canvas % 32 or canvas % self.vit.patch_size:
            raise MaebenchError(f"detection canvas {canvas} px must be a multiple of 32 and of the patch size "
                                f"{self.vit.patch_size}")
        self.canvas, self.neck_name = canvas, "vitdet"
        self.neck = SimpleFeaturePyramid(self.vit.embed_dim, self.vit.patch_size, out_channels)
        self.out_channels = out_channels    # read by torchvision's MaskRCNN

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        h, w = x.shape[-2:]
        if h > self.canvas or w > self.canvas:
            raise MaebenchError(f"image batch {h}x{w} is larger than the {self.canvas} px detection canvas")
        levels = self.neck(self.vit(F.pad(x, (0, self.canvas - w, 0, self.canvas - h))))
        levels = [m[..., :-(-h // s), :-(-w // s)] for m, s in zip(levels, STRIDES)]
        out = OrderedDict((str(i), m) for i, m in enumerate(levels))
        out["pool"] = F.max_pool2d(levels[-1], kernel_size=1, stride=2)    # LastLevelMaxPool (P6)
        return out


# ---- RoI pooling -------------------------------------------------------------------------------
class AlignedRoIPool(MultiScaleRoIAlign):
    """detectron2's ROIAlignV2 over P2-P5 (configs/common/models/mask_rcnn_fpn.py pooler_type):
    roi_align with aligned=True (pixel centres at +0.5) and sampling_ratio 0 (adaptive), each box
    on the level floor(4 + log2(sqrt(area) / 224)) clamped to 2..5, as torchvision's
    MultiScaleRoIAlign assigns levels (which itself samples 2 x 2 points without the shift; the
    subclass only because torchvision's MaskRCNN accepts no other pooler type)."""

    def __init__(self, output_size: int, sampling_ratio: int = 0):
        super().__init__([str(i) for i in range(len(STRIDES))], output_size, sampling_ratio)
        from torchvision.ops.poolers import LevelMapper
        self.map_levels = LevelMapper(2, 5, canonical_scale=224, canonical_level=4)

    def forward(self, features: "OrderedDict[str, torch.Tensor]", boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        from torchvision.ops import roi_align
        feats = [features[str(i)] for i in range(len(STRIDES))]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        levels = self.map_levels(boxes)
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], *self.output_size))
        for level, (f, stride) in enumerate(zip(feats, STRIDES)):
            idx = torch.where(levels == level)[0]
            out[idx] = roi_align(f, rois[idx], self.output_size, spatial_scale=1.0 / stride,
                                 sampling_ratio=self.sampling_ratio, aligned=True).to(out.dtype)
        return out
