"""The downstream ViT encoder: timm's VisionTransformer, whose state-dict keys are those of the
official MAE, MoCo v3 and DeiT releases (`patch_embed.proj.weight`, `blocks.N.attn.qkv.weight`,
`cls_token`, `pos_embed`, `norm`/`fc_norm`, `head`).

Architectures are named `vit-<size>`; the factory takes the task's image size, patch size and
channels, so e.g. a 28 px Fashion-MNIST ViT uses `create_vit("vit-tiny", img_size=28, patch_size=4)`.
"""
from __future__ import annotations

from functools import partial

import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

# the architecture table (vit-micro ... vit-giant) is catalogue.yaml's `architectures`, read
# without torch by backbones/catalogue.py, so `maebench backbones list` never imports torch
from maebench.backbones.catalogue import arch_dims


def create_vit(arch: str, *, img_size: int = 224, patch_size: int | None = None, in_chans: int = 3,
               num_classes: int = 0, global_pool: str = "token", drop_path_rate: float = 0.0,
               dynamic_img_size: bool = False, **kwargs) -> VisionTransformer:
    """A ViT encoder. global_pool='avg' gives the MAE fine-tuning head (mean of patch tokens,
    then `fc_norm`); 'token' uses the [cls] output after `norm` (linear probing, k-NN)."""
    embed_dim, depth, num_heads, default_patch = arch_dims(arch)
    model = VisionTransformer(
        img_size=img_size, patch_size=patch_size or default_patch, in_chans=in_chans,
        num_classes=num_classes, global_pool=global_pool, embed_dim=embed_dim, depth=depth,
        num_heads=num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path_rate=drop_path_rate,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), dynamic_img_size=dynamic_img_size, **kwargs)
    model.arch = arch
    return model
