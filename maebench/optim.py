"""Parameter groups (weight decay, layer-wise lr decay) and learning-rate schedules (the peak lr
they start from: maebench/lr_rule.py).

Layer-wise decay follows the MAE/BEiT recipe: the patch embedding, [cls] token and position
embedding are layer 0, block i is layer i + 1, everything after the blocks (norm, head, neck,
task heads) is layer num_layers + 1, and a parameter of layer l gets
lr_scale = layer_decay ** (num_layers + 1 - l).

Weight decay: `param_groups` follows the MAE/BEiT transfer code (every 1-D tensor and the
position / token embeddings undecayed); `detectron2_param_groups` follows detectron2's
get_default_optimizer_params, which the ViTDet configs use (biases decayed, norms by module type).
"""
from __future__ import annotations

import math
import re

import torch.nn as nn

# Parameters never decayed, besides every 1-D tensor (norms, biases).
NO_DECAY_NAMES = ("cls_token", "pos_embed", "mask_token", "dist_token", "decoder_pos_embed",
                  "relative_position_bias_table", "reg_token")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_EMBED = re.compile(r"(?:^|\.)(cls_token|pos_embed|patch_embed|dist_token|reg_token|mask_token)(?:\.|$)")


def layer_id(name: str, num_layers: int, vit_prefix: str = "") -> int:
    """Layer index of a parameter for layer-wise lr decay; names outside `vit_prefix` are heads."""
    if not name.startswith(vit_prefix):
        return num_layers + 1
    rest = name[len(vit_prefix):]
    if _EMBED.match(rest):
        return 0
    m = _BLOCK.match(rest)
    if m:
        return int(m.group(1)) + 1
    return num_layers + 1


def timm_layer_ids(model: nn.Module, vit_prefix: str = "") -> dict[str, int] | None:
    """Layer index per parameter from timm's own grouping (the model's group_matcher: stem = patch
    embedding, tokens, position embedding and pre-norm; block i = i + 1; the final norm after),
    for ViTs marked `timm_layer_groups` (the timm-built families, backbones/timm_family.py)."""
    try:
        vit = model.get_submodule(vit_prefix.rstrip(".")) if vit_prefix else model
    except AttributeError:
        return None
    if not getattr(vit, "timm_layer_groups", False) or not hasattr(vit, "group_matcher"):
        return None
    from timm.models import group_parameters
    ids = group_parameters(vit, vit.group_matcher(coarse=False), reverse=True)
    return {vit_prefix + k: int(v) for k, v in ids.items()}


def param_groups(model: nn.Module, *, weight_decay: float, layer_decay: float = 1.0,
                 num_layers: int | None = None, vit_prefix: str = "") -> list[dict]:
    """Optimizer groups carrying `lr_scale`; only parameters with requires_grad are included.

    `vit_prefix` is where the ViT sits inside a wrapped model (e.g. "backbone.vit."), so that the
    decay applies to the ViT's blocks and not to a neck's or head's own submodules.
    """
    groups: dict[tuple[int, bool], dict] = {}
    timm_ids = timm_layer_ids(model, vit_prefix) if layer_decay < 1.0 and num_layers is not None else None
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim == 1 or name.split(".")[-1] in NO_DECAY_NAMES
        if layer_decay < 1.0 and num_layers is not None:
            lid = layer_id(name, num_layers, vit_prefix)
            if timm_ids is not None and name.startswith(vit_prefix):
                lid = min(timm_ids.get(name, num_layers + 1), num_layers + 1)
            scale = layer_decay ** (num_layers + 1 - lid)
        else:
            lid, scale = 0, 1.0
        key = (lid, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "weight_decay": 0.0 if no_decay else weight_decay,
                           "lr_scale": scale, "layer_id": lid}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


# detectron2 solver/build.py get_default_optimizer_params: the module types whose parameters take
# `weight_decay_norm`. Parameter-free norms (torchvision's and detectron2's FrozenBatchNorm2d keep
# buffers only) have nothing to decay either way.
DETECTRON2_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
                         nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm,
                         nn.LocalResponseNorm)


def detectron2_param_groups(model: nn.Module, *, weight_decay: float, weight_decay_norm: float | None,
                            overrides: dict[str, dict[str, float]] | None = None, layer_decay: float = 1.0,
                            num_layers: int | None = None, vit_prefix: str = "",
                            not_norms: tuple[type, ...] = ()) -> list[dict]:
    """Groups as detectron2's get_default_optimizer_params builds them (the ViTDet configs:
    bias_lr_factor 1, weight_decay_bias None), in the shape `param_groups` returns.

    Weight decay is `weight_decay` for every parameter, biases included, except: a parameter of a
    module of DETECTRON2_NORM_TYPES takes `weight_decay_norm` when that is not None, and
    `overrides[local name]` (the parameter's name inside its module, e.g. "pos_embed") is applied
    last. `not_norms` are subclasses of those types that stand for a detectron2 module outside
    the list: maebench's channels-first LayerNorm2d is an nn.LayerNorm, detectron2's
    layers.LayerNorm (the simple feature pyramid's, conv_norm="LN" in the heads) is not, so it is
    decayed. The lr scale is layer-wise decay as `param_groups` computes it (for a ViT under
    `vit_prefix`: detectron2's get_vit_lr_decay_rate)."""
    overrides = overrides or {}
    groups: dict[tuple[int, float], dict] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, DETECTRON2_NORM_TYPES) and not isinstance(module, not_norms)
        for local, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{module_name}.{local}" if module_name else local
            wd = weight_decay_norm if is_norm and weight_decay_norm is not None else weight_decay
            wd = float(overrides.get(local, {}).get("weight_decay", wd))
            if layer_decay < 1.0 and num_layers is not None:
                lid = layer_id(name, num_layers, vit_prefix)
                scale = layer_decay ** (num_layers + 1 - lid)
            else:
                lid, scale = 0, 1.0
            key = (lid, wd)
            if key not in groups:
                groups[key] = {"params": [], "names": [], "weight_decay": wd, "lr_scale": scale, "layer_id": lid}
            groups[key]["params"].append(p)
            groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def lr_at(step: float, *, lr: float, min_lr: float, warmup_steps: float, total_steps: float,
          schedule: str = "cosine", milestones: tuple[float, ...] = (), gamma: float = 0.1,
          power: float = 1.0) -> float:
    """Learning rate at a (fractional) step: linear warm-up, then cosine / step / poly / constant."""
    if step < warmup_steps:
        return lr * step / warmup_steps
    if schedule == "constant":
        return lr
    progress = (step - warmup_steps) / max(1.0, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "poly":
        return min_lr + (lr - min_lr) * (1.0 - progress) ** power
    if schedule == "step":   # milestones given as fractions of training, e.g. (0.89, 0.96)
        return lr * gamma ** sum(progress >= m for m in milestones)
    from maebench.errors import unknown
    raise unknown("lr schedule", schedule, ("cosine", "poly", "step", "constant"))


def describe_groups(groups: list[dict], base_lr: float) -> str:
    """The per-group lr table logged once at start, so users can check layer decay."""
    from tabulate import tabulate
    rows = [(g["layer_id"], len(g["params"]), g["weight_decay"], f"{g['lr_scale']:.4f}",
             f"{base_lr * g['lr_scale']:.3e}", g["names"][0] + (" ..." if len(g["names"]) > 1 else ""))
            for g in groups]
    return tabulate(rows, headers=["layer", "tensors", "wd", "lr scale", "lr", "first parameter"])
