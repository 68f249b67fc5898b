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

from maebench.errors import unknown

# name -> (embed_dim, depth, num_heads, default patch size)
ARCHS: dict[str, tuple[int, int, int, int]] = {
    "vit-micro": (96, 4, 3, 4),       # CPU scale: tests and `maebench demo` (32-128 px images)
    "vit-tiny": (192, 12, 3, 16),
    "vit-small": (384, 12, 6, 16),
    "vit-base": (768, 12, 12, 16),
    "vit-large": (1024, 24, 16, 16),
    "vit-huge": (1280, 32, 16, 14),
    "vit-giant": (1536, 40, 24, 14),  # DINOv2 ViT-g's width and depth (its SwiGLU MLP is timm's, not this one)
}


def arch_dims(arch: str) -> tuple[int, int, int, int]:
    if arch not in ARCHS:
        raise unknown("architecture", arch, ARCHS)
    return ARCHS[arch]


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
