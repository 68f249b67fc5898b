"""BEiT (microsoft/unilm beit) checkpoints: beit_{base,large}_patch16_224_pt22k.pth and fine-tuned ones.

Published layout, under "model": timm-like ViT keys with BEiT's differences --
  blocks.N.attn.q_bias / v_bias        qkv bias split (there is no k bias)
  blocks.N.gamma_1 / gamma_2           layer scale
  rel_pos_bias.relative_position_bias_table   one table shared by all blocks (pretraining), or
  blocks.N.attn.relative_position_bias_table  one per block (fine-tuned files)
  *.relative_position_index            a buffer recomputed by the model
  mask_token, lm_head.*                masked-image-modelling parts (pretraining only)
  pos_embed                            absent in the pt22k files (relative position bias only)

With relative position bias the canonical layout is timm's Beit (same key names as the
release), and `load` builds a timm Beit. The shared table is copied into every block, as BEiT's
own fine-tuning does; each block then computes exactly the bias the shared table gave it.
Without relative position bias the weights become a plain timm VisionTransformer:
qkv.bias = cat(q_bias, zeros, v_bias), gamma_i -> ls{i}.gamma.
"""
from __future__ import annotations

from typing import Any

import torch

from maebench.backbones.formats.canonical import Converted, depth_of, drop, strip_prefixes, unwrap
from maebench.errors import MaebenchError

SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"
# layer scale value the BEiT-base recipe starts from; only its being non-zero matters, since
# the loaded gamma tensors replace the initial values
LAYER_SCALE_INIT = 0.1


def is_beit(state: dict) -> bool:
    return any(k.endswith(("attn.q_bias", "relative_position_bias_table")) for k in state)


def convert_beit(top: Any, path) -> Converted:
    state = strip_prefixes(unwrap(top, path))
    if not is_beit(state):
        raise MaebenchError(f"{path}: no q_bias/v_bias or relative position bias keys: not a BEiT checkpoint")
    notes: list[str] = []
    drop(state, lambda k: k.startswith("lm_head.") or k == "mask_token", notes,
         "BEiT's masked-image-modelling head and mask token (pretraining only, fine)")
    drop(state, lambda k: k.endswith("relative_position_index"), [], "")
    depth = depth_of(state)
    shared = state.pop(SHARED_TABLE, None)
    if shared is not None:
        for i in range(depth):
            state[f"blocks.{i}.attn.relative_position_bias_table"] = shared.clone()
        notes.append(f"copied the shared relative position bias table into each of the {depth} blocks, "
                     "as BEiT fine-tuning does (same outputs)")
    has_rel = any(k.endswith("attn.relative_position_bias_table") for k in state)
    has_ls = any(k.endswith("gamma_1") for k in state)
    has_abs = "pos_embed" in state
    if not has_abs:
        notes.append("no absolute position embedding: positions come from the relative position bias")
    if has_rel:
        kwargs = {"use_abs_pos_emb": has_abs, "use_rel_pos_bias": True,
                  "init_values": LAYER_SCALE_INIT if has_ls else None}
        return Converted("beit", state, model="beit", vit_kwargs=kwargs, notes=notes)
    if not has_abs:
        raise MaebenchError(f"{path}: BEiT checkpoint with neither position embeddings nor relative position bias")
    return Converted("beit", _to_vit_keys(state, depth), vit_kwargs={"init_values": LAYER_SCALE_INIT} if has_ls else {},
                     notes=notes + ["no relative position bias: converted to a plain ViT (qkv bias = q, 0, v)"])


def _to_vit_keys(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    out = dict(state)
    for i in range(depth):
        b = f"blocks.{i}."
        q, v = out.pop(b + "attn.q_bias", None), out.pop(b + "attn.v_bias", None)
        if q is not None and v is not None:
            out[b + "attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
        for j in (1, 2):
            g = out.pop(f"{b}gamma_{j}", None)
            if g is not None:
                out[f"{b}ls{j}.gamma"] = g
    return out
