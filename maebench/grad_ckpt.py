"""`grad_checkpointing: true`: activation checkpointing of the transformer blocks.

Each block's activations are dropped after its forward and recomputed in the backward: the
saved activations of a step shrink to the block inputs, for about one more forward's time.
timm's own switch, `set_grad_checkpointing(True)`, sets `grad_checkpointing` on every timm
model inside ours (the classifier itself, the ViT under UperNet or Mask R-CNN, MoCo v3's
encoders); timm's forward_features / forward_intermediates then checkpoint every block, and
the block loops maebench runs itself (the MAE encoder and decoder, ViTDet's encoder) read the
same flag through `run_blocks`.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from maebench.errors import MaebenchError


def enable(model: nn.Module) -> int:
    """Switch checkpointing on in every part of `model` that has timm's switch; how many parts.
    A model with none is an error (the key would silently do nothing)."""
    parts = [m for m in model.modules() if callable(getattr(m, "set_grad_checkpointing", None))]
    for m in parts:
        m.set_grad_checkpointing(True)
    if not parts:
        raise MaebenchError(f"grad_checkpointing=true: {type(model).__name__} has no part with "
                            "set_grad_checkpointing (timm ViTs and the MAE model have it); set it to false")
    return len(parts)


def run_blocks(owner: nn.Module, blocks: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """x through `blocks` in turn, each checkpointed when `owner.grad_checkpointing` is set and
    gradients are being recorded."""
    on = getattr(owner, "grad_checkpointing", False) and torch.is_grad_enabled()
    for blk in blocks:
        x = checkpoint(blk, x, use_reentrant=False) if on else blk(x)
    return x
