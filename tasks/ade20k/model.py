"""UperNet on a ViT: backbone (4 block outputs) -> the shared pyramid (tasks/pyramid.py, BatchNorm
between deconvolutions as in the MAE/BEiT segmentation code) -> UperNet + auxiliary FCN.

The heads are transformers' maintained port of mmseg's UPerHead and FCNHead
(`transformers.models.upernet.modeling_upernet`), built from a small config object with the
fields they read. Around them, what the MAE/BEiT ADE20K recipe adds: dropout 0.1 before each
classifier and classifier init N(0, 0.01) (mmseg's BaseDecodeHead), relative position bias in the
ViT (zero-init, `relpos.py`), and an auxiliary loss on the stride-16 level with weight 0.4.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from maebench.tasks.pyramid import FeaturePyramid, prune_for_taps, tap_indices
from maebench.tasks.ade20k.relpos import RelPosAttention, enable_relative_position_bias


@dataclass
class HeadConfig:
    """The fields UperNetHead / UperNetFCNHead read, under UperNetConfig's names."""
    num_labels: int
    hidden_size: int = 512                 # UperNet channels (mmseg `channels`)
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)
    auxiliary_channels: int = 256
    auxiliary_num_convs: int = 1
    auxiliary_concat_input: bool = False
    auxiliary_in_channels: int | None = None


class ViTFeatures(nn.Module):
    """A timm ViT (or BEiT) as a 4-level feature extractor on its patch grid.

    x [B, 3, H, W] (H, W multiples of the patch size) -> 4 x [B, D, H/p, W/p], the outputs of
    blocks `out_indices` (no final norm, prefix tokens dropped). Blocks after the last index, the
    final norm and the classifier are removed, so every parameter gets a gradient (DDP runs
    without find_unused_parameters)."""

    def __init__(self, vit: nn.Module, *, out_indices: list[int] | None = None,
                 rel_pos_bias: bool = True, window: tuple[int, int]):
        super().__init__()
        depth = len(vit.blocks)
        self.out_indices = list(out_indices) if out_indices else tap_indices(depth, "groups")
        if len(self.out_indices) != 4 or sorted(set(self.out_indices)) != self.out_indices \
                or not 0 <= self.out_indices[0] <= self.out_indices[-1] < depth:
            raise ValueError(f"out_indices must be 4 increasing block indices below {depth}, got {self.out_indices}")
        prune_for_taps(vit, self.out_indices)
        self.vit = vit
        self.embed_dim = int(vit.embed_dim)
        patch = vit.patch_embed.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        # timm ViTs built with dynamic_img_size take any multiple of the patch; BEiT's relative
        # position tables pin it to the size it was built for.
        self.fixed_size = None if getattr(vit, "dynamic_img_size", False) else \
            tuple(window[i] * self.patch_size for i in range(2))
        if rel_pos_bias and self._has_own_relative_bias():
            rel_pos_bias = False        # BEiT: the checkpoint's own tables are fine-tuned instead
        if rel_pos_bias:
            enable_relative_position_bias(vit, window)

    def _has_own_relative_bias(self) -> bool:
        """BEiT's relative tables or EVA-02's rotary embedding: the model's own position scheme."""
        return any(hasattr(b.attn, "relative_position_bias_table") and not isinstance(b.attn, RelPosAttention)
                   for b in self.vit.blocks) or getattr(self.vit, "rel_pos_bias", None) is not None \
            or getattr(self.vit, "rope", None) is not None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        for block in self.vit.blocks:
            if isinstance(block.attn, RelPosAttention):
                block.attn.grid = grid
        return self.vit.forward_intermediates(x, indices=self.out_indices, intermediates_only=True)


def _with_dropout(classifier: nn.Conv2d, p: float) -> nn.Module:
    nn.init.normal_(classifier.weight, std=0.01)
    nn.init.zeros_(classifier.bias)
    return nn.Sequential(nn.Dropout2d(p), classifier) if p > 0 else classifier


class UperNetSegmentor(nn.Module):
    """images [B, 3, H, W] -> (logits [B, K, H/s, W/s] at the first level's stride s (4 for /16
    models), auxiliary logits at the third level's or None outside training); `predict` gives
    logits at the input resolution."""

    def __init__(self, vit: nn.Module, *, num_classes: int, window: tuple[int, int],
                 out_indices: list[int] | None = None, rel_pos_bias: bool = True, channels: int = 512,
                 aux_channels: int = 256, pool_scales=(1, 2, 3, 6), dropout: float = 0.1, aux: bool = True):
        from transformers.models.upernet.modeling_upernet import UperNetFCNHead, UperNetHead

        super().__init__()
        self.backbone = ViTFeatures(vit, out_indices=out_indices, rel_pos_bias=rel_pos_bias, window=window)
        dim = self.backbone.embed_dim
        self.neck = FeaturePyramid(dim, self.backbone.patch_size, taps="groups", norm="batch")
        cfg = HeadConfig(num_labels=num_classes, hidden_size=channels, pool_scales=tuple(pool_scales),
                         auxiliary_channels=aux_channels)
        self.decode_head = UperNetHead(cfg, in_channels=[dim] * 4)
        self.decode_head.classifier = _with_dropout(self.decode_head.classifier, dropout)
        self.aux_head = None
        if aux:
            self.aux_head = UperNetFCNHead(cfg, in_channels=[dim] * 4, in_index=2)   # stride-16 level
            self.aux_head.classifier = _with_dropout(self.aux_head.classifier, dropout)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.neck(self.backbone(images))              # 4 x [B, D, h_i, w_i]
        logits = self.decode_head(features)                      # [B, K, h_0, w_0]
        aux = self.aux_head(features) if self.training and self.aux_head is not None else None
        return logits, aux

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K, H, W] for images of any size: padded (bottom/right, zeros) to what the
        backbone takes, upsampled bilinearly, cropped back."""
        h, w = images.shape[-2:]
        p = self.backbone.patch_size
        if self.backbone.fixed_size is not None:
            th, tw = self.backbone.fixed_size
            if h > th or w > tw:
                raise ValueError(f"this backbone takes inputs of at most {th}x{tw}; use sliding-window "
                                 f"inference with that crop (got {h}x{w})")
        else:
            th, tw = -(-h // p) * p, -(-w // p) * p
        x = F.pad(images, (0, tw - w, 0, th - h)) if (th, tw) != (h, w) else images
        logits, _ = self(x)
        logits = F.interpolate(logits.float(), size=(th, tw), mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


def segmentation_loss(logits: torch.Tensor, aux: torch.Tensor | None, labels: torch.Tensor, *,
                      ignore_index: int, aux_weight: float = 0.4) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pixel cross-entropy at the label resolution (logits upsampled bilinearly, as mmseg), mean
    over labelled pixels; a crop with no labelled pixel contributes 0 rather than NaN."""
    valid = (labels != ignore_index).sum().clamp(min=1)

    def ce(x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(x, labels, ignore_index=ignore_index, reduction="sum") / valid

    main = ce(logits)
    if aux is None:
        return main, {"loss_seg": main.detach()}
    aux_loss = ce(aux)
    return main + aux_weight * aux_loss, {"loss_seg": main.detach(), "loss_aux": aux_loss.detach()}
