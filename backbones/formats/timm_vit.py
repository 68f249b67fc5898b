"""timm and DeiT supervised ViTs: timm VisionTransformer keys, flat or under "model".

timm      a flat state dict (timm's pytorch_model.bin / .safetensors, or torch.save(model.state_dict()))
deit      {"model": ...} from facebookresearch/deit, including
          - distilled DeiT: a `dist_token`, its own position-embedding row (index 1) and `head_dist`;
            dropped, leaving the [cls] path (features shift a little: the blocks no longer attend to it)
          - DeiT III: layer scale as gamma_1/gamma_2 and position embeddings for the patches only
            ([cls] is added after them): timm's `init_values` and `no_embed_class`
"""
from __future__ import annotations

import re
from typing import Any

import torch

from maebench.backbones.formats.canonical import Converted, drop, square_side, strip_prefixes, unwrap

DEIT3_LAYER_SCALE_INIT = 1e-6  # only its being non-zero matters: the loaded gammas replace it


def convert_timm(top: Any, path, *, fmt: str) -> Converted:
    state = strip_prefixes(unwrap(top, path))
    notes: list[str] = []
    kwargs: dict[str, Any] = {}
    if "dist_token" in state:
        pos = state.get("pos_embed")
        if pos is not None and pos.shape[1] >= 2:
            state["pos_embed"] = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
        drop(state, lambda k: k == "dist_token" or k.startswith("head_dist."), notes,
             "the DeiT distillation token, its position embedding and head_dist; the [cls] path is "
             "kept, but features differ slightly from the distilled model's")
    drop(state, lambda k: k.startswith("pre_logits."), notes, "the old pre-logits layer (unused downstream)")
    renamed = {}
    for k in list(state):
        m = re.fullmatch(r"(blocks\.\d+\.)gamma_([12])", k)
        if m:
            renamed[f"{m.group(1)}ls{m.group(2)}.gamma"] = state.pop(k)
    state.update(renamed)
    if renamed or any(k.endswith("ls1.gamma") for k in state):
        kwargs["init_values"] = DEIT3_LAYER_SCALE_INIT
        notes.append("layer scale (DeiT III style): built with timm init_values")
    pos = state.get("pos_embed")
    if pos is not None and pos.ndim == 3 and square_side(pos.shape[1]):
        kwargs["no_embed_class"] = True
        notes.append("position embeddings cover the patches only ([cls] added after them): built with "
                     "timm no_embed_class")
    if "head.weight" in state:
        notes.append(f"classifier head kept ({state['head.weight'].shape[0]} classes); tasks with "
                     "another class count start a new head")
    else:
        notes.append("no classifier head (fine: tasks add their own)")
    return Converted(fmt, state, vit_kwargs=kwargs, notes=notes)
