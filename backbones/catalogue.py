"""The built-in catalogue (catalogue.yaml) and architecture arithmetic, without torch.

`maebench backbones list` must answer at once, so nothing here imports torch or timm: the
architecture dimensions come from the catalogue's `architectures` table, the one table of
them (backbones/vit.py builds from it), and parameter counts are computed from them.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from maebench.errors import MaebenchError, unknown

CATALOGUE_PATH = Path(__file__).with_name("catalogue.yaml")
# how a backbone was pretrained, for the leaderboard; the last three for the timm-built families
# (backbones/timm_family.py): DINOv2, CLIP / OpenCLIP / SigLIP, EVA-02 (masked CLIP-feature targets)
FAMILIES = ("supervised", "contrastive", "mae-pixel", "mae-norm-pixel", "mae-pca", "mae-token", "scratch",
            "self-distillation", "image-text", "mim-feature")
MODEL_KINDS = ("vit", "beit", "timm")  # timm VisionTransformer / timm Beit / any timm model by name
REQUIRED_FIELDS = ("arch", "patch_size", "img_size", "mean", "std", "family", "paper")


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(CATALOGUE_PATH, encoding="utf-8") as f:
        data = yaml.load(f, Loader=loader)
    for name, e in data["backbones"].items():
        missing = [k for k in REQUIRED_FIELDS if k not in e]
        if missing:
            raise MaebenchError(f"{CATALOGUE_PATH}: backbone '{name}' lacks {', '.join(missing)}")
        if e["family"] not in FAMILIES:
            raise MaebenchError(f"{CATALOGUE_PATH}: backbone '{name}' has unknown family '{e['family']}'")
    return data


def catalogue() -> dict[str, dict[str, Any]]:
    """name -> entry fields as written in catalogue.yaml (a fresh copy per call)."""
    return {k: dict(v) for k, v in _raw()["backbones"].items()}


def arch_names() -> list[str]:
    return sorted(_raw()["architectures"])


def arch_dims(arch: str) -> tuple[int, int, int, int]:
    """(embed_dim, depth, num_heads, default patch size) of a `vit-<size>` architecture."""
    a = _raw()["architectures"].get(arch)
    if a is None:
        raise unknown("architecture", arch, arch_names())
    return a["embed_dim"], a["depth"], a["num_heads"], a["patch_size"]


def infer_arch(embed_dim: int, depth: int) -> str | None:
    """The architecture with this width and depth, or None (heads cannot be read off weights)."""
    for name in arch_names():
        d, n, _, _ = arch_dims(name)
        if (d, n) == (embed_dim, depth):
            return name
    return None


def param_count(arch: str, *, patch_size: int, img_size: int, in_chans: int = 3, model: str = "vit",
                vit_kwargs: dict | None = None) -> int:
    """Encoder parameters (no head), counted the way the timm model holds them."""
    d, depth, heads, _ = arch_dims(arch)
    kw = vit_kwargs or {}
    grid = img_size // patch_size
    n = d * in_chans * patch_size * patch_size + d  # patch embedding
    n += d  # cls token
    block = 2 * d + (3 * d * d) + (d * d + d) + 2 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
    if model == "beit":
        block += 2 * d  # q_bias + v_bias (no k bias)
        if kw.get("use_rel_pos_bias", True):
            block += ((2 * grid - 1) ** 2 + 3) * heads
        if kw.get("use_abs_pos_emb", False):
            n += (grid * grid + 1) * d
    else:
        block += 3 * d  # qkv bias
        n += (grid * grid + (0 if kw.get("no_embed_class") else 1)) * d
    if kw.get("init_values"):
        block += 2 * d  # layer scale
    return n + depth * block + 2 * d  # final norm


def human_count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


# The pooled feature each family is fine-tuned from in its own release; fine-tuning and partial
# fine-tuning read it unless global_pool is set. avg = the mean of the patch tokens through
# fc_norm, token = the [cls] output after the final norm.
FINETUNE_POOL = {
    "mae-pixel": "avg", "mae-norm-pixel": "avg", "mae-pca": "avg",   # MAE main_finetune.py --global_pool (default)
    "mae-token": "avg",                            # BEiT: use_mean_pooling
    "scratch": "avg",                              # the MAE paper's from-scratch baseline, same recipe
    "contrastive": "token",                        # MoCo v3 main_lincls / DeiT fine-tuning: [cls]
    "supervised": "token",                         # DeiT / ViT: [cls]
    "self-distillation": "token",                  # DINOv2: [cls]
    "image-text": "token",                         # CLIP: [cls] after ln_post
    "mim-feature": "avg",                          # EVA-02: the mean through fc_norm
}
FINETUNE_POOL_BY_MODEL_FAMILY = {
    "dinov2": "token", "clip": "token", "openclip": "token", "deit3": "token",
    "eva02": "avg",                                # EVA-02 fine-tunes the mean through fc_norm
    "beit2": "avg",                                # BEiT v2: use_mean_pooling
    "siglip": "avg",                               # no [cls] token
}


def finetune_pool(entry: Any) -> str:
    """'avg' or 'token' for a registry entry: its model family's (timm-built releases), else its
    family's (FINETUNE_POOL), else 'avg' (the MAE recipe's)."""
    by_model = FINETUNE_POOL_BY_MODEL_FAMILY.get(getattr(entry, "model_family", None) or "")
    return by_model or FINETUNE_POOL.get(entry.family, "avg")
