"""What every checkpoint converter shares: the canonical result and key-layout helpers.

Canonical layout = the state dict of the model maebench builds (timm VisionTransformer keys, or
timm Beit keys for BEiT with relative position bias), plus, separately, the official MAE decoder
keys (`decoder_*`, `mask_token`) when the source has a decoder.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from maebench.errors import MaebenchError

# Wrappers that training scripts put around a state dict, outermost first.
WRAPPER_KEYS = ("model", "state_dict", "module")
# Per-key prefixes added by DDP (`module.`), detection frameworks (`backbone.`) and MAE-style
# pretraining wrappers (`encoder.`); timm ViT keys never start with them.
STRIP_PREFIXES = ("module.", "backbone.", "encoder.")

# Keys a model head or pooling norm may or may not have; never required of a backbone checkpoint.
OPTIONAL_PREFIXES = ("head.", "fc_norm.")


@dataclass
class Converted:
    fmt: str                                      # the format it was read as
    encoder: dict[str, torch.Tensor]              # canonical encoder keys
    decoder: dict[str, torch.Tensor] = field(default_factory=dict)  # official MAE decoder keys
    model: str = "vit"                            # "vit" (timm VisionTransformer) or "beit" (timm Beit)
    vit_kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor options the weights need
    meta: dict[str, Any] = field(default_factory=dict)        # maebench metadata found in the file
    rel_pos: dict[str, torch.Tensor] = field(default_factory=dict)  # ViTDet / SAM decomposed tables (blocks.N.attn.rel_pos_h/w)
    notes: list[str] = field(default_factory=list)            # what was dropped or absent, and why that is fine

    @property
    def num_prefix_tokens(self) -> int:
        """Rows of pos_embed before the patch grid ([cls]); 0 for DeiT III style embeddings."""
        return 0 if self.vit_kwargs.get("no_embed_class") else 1


def tensors_only(d: Mapping) -> dict[str, torch.Tensor]:
    return {k: v for k, v in d.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def unwrap(top: Any, path) -> dict[str, torch.Tensor]:
    """The tensor dict inside `top` ({"model": ...}, {"state_dict": ...}, nested or flat)."""
    if not isinstance(top, Mapping):
        raise MaebenchError(f"{path}: not a state dict (the file holds a {type(top).__name__})")
    state = top
    for key in WRAPPER_KEYS:
        inner = state.get(key)
        if isinstance(inner, Mapping) and tensors_only(inner):
            state = inner
    out = tensors_only(state)
    if not out:
        raise MaebenchError(f"{path}: no tensors found (top-level keys: {', '.join(map(str, list(top)[:8]))})")
    return out


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in STRIP_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def is_decoder_key(k: str) -> bool:
    return k.startswith("decoder_") or k == "mask_token"


def split_decoder(state: Mapping[str, torch.Tensor]):
    enc = {k: v for k, v in state.items() if not is_decoder_key(k)}
    dec = {k: v for k, v in state.items() if is_decoder_key(k)}
    return enc, dec


def drop(state: dict[str, torch.Tensor], pred: Callable[[str], bool], notes: list[str], what: str) -> int:
    """Remove keys matching `pred` from `state`, noting `what` they were; returns how many."""
    keys = [k for k in state if pred(k)]
    for k in keys:
        del state[k]
    if keys:
        notes.append(f"dropped {what} ({len(keys)} tensors, e.g. {keys[0]})")
    return len(keys)


def depth_of(state: Mapping[str, torch.Tensor]) -> int:
    idx = [int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))]
    return max(idx) + 1 if idx else 0


def square_side(n: int) -> int | None:
    side = int(round(n ** 0.5))
    return side if side * side == n else None
