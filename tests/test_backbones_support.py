"""Shared helpers for the tests/test_backbones_*.py files (no tests here).

Checkpoints are built from a tiny random ViT (vit-micro: width 96, 4 blocks, 3 heads, at 16 px
with 4 px patches: a 4x4 grid), re-keyed in each format's published layout.
"""
from __future__ import annotations

import pytest
import torch

ARCH, DIM, DEPTH, HEADS = "vit-micro", 96, 4, 3
IMG, PATCH = 16, 4


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh MAEBENCH_HOME (results go to a file inside it)."""
    h = tmp_path / "home"
    monkeypatch.setenv("MAEBENCH_HOME", str(h))
    monkeypatch.delenv("MAEBENCH_RESULTS", raising=False)
    yield h


def tiny_vit(seed: int = 0, **kw):
    from maebench.backbones.vit import create_vit
    g = torch.Generator().manual_seed(seed)
    model = create_vit(ARCH, img_size=kw.pop("img_size", IMG), patch_size=PATCH, weight_init="skip", **kw)
    with torch.no_grad():  # random everything (norms and layer scales too, so that a wrong mapping shows)
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith("weight") and "norm" in name else 0.0
            p.copy_(base + 0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def images(n: int = 2, chans: int = 3, size: int = IMG, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, chans, size, size, generator=g)


@torch.no_grad()
def features(model, x: torch.Tensor) -> torch.Tensor:
    return model.eval().forward_features(x)


def save(obj, path):
    torch.save(obj, path)
    return path


def mae_decoder(dec_dim: int = 64, depth: int = 1, seed: int = 3) -> dict[str, torch.Tensor]:
    """Official MAE decoder keys (models_mae.py) for the tiny grid: 16 patches + [cls]."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    d = {"mask_token": r(1, 1, dec_dim), "decoder_embed.weight": r(dec_dim, DIM), "decoder_embed.bias": r(dec_dim),
         "decoder_pos_embed": r(1, 17, dec_dim), "decoder_norm.weight": r(dec_dim), "decoder_norm.bias": r(dec_dim),
         "decoder_pred.weight": r(PATCH * PATCH * 3, dec_dim), "decoder_pred.bias": r(PATCH * PATCH * 3)}
    for i in range(depth):
        d[f"decoder_blocks.{i}.attn.qkv.weight"] = r(3 * dec_dim, dec_dim)
        d[f"decoder_blocks.{i}.mlp.fc1.weight"] = r(4 * dec_dim, dec_dim)
    return d
