"""Build the model a backbone entry describes and fit canonical weights to it.

Two model kinds: "vit" = backbones.vit.create_vit (timm VisionTransformer), "beit" = timm's Beit
(relative position bias + layer scale), which shares the attributes tasks use (`blocks`,
`patch_embed`, `cls_token`, `norm`, `fc_norm`, `head`, `forward_features`, `num_prefix_tokens`;
its `pos_embed` is None when the weights have only relative position bias).

Fitting adapts stored weights to the requested model: position embeddings (and BEiT's relative
position tables) resized to the model's patch grid, the patch projection adapted to another
input channel count, and the pooling norm / classifier kept only where the model has them.
`resample_patch_embed` gives a built ViT another patch size on the same token grid (patch 14 ->
16 for the dense tasks, as detectron2's ViTDet-H does with mae_pretrain_vit_huge_p14to16).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from maebench import torch_io
from maebench.backbones.catalogue import arch_dims
from maebench.backbones.pos_embed import resize_pos_embed
from maebench.backbones.vit import create_vit
from maebench.errors import MaebenchError

REL_TABLE = "relative_position_bias_table"


def build_model(kind: str, arch: str, *, img_size: int, patch_size: int, in_chans: int = 3,
                num_classes: int = 0, global_pool: str = "token", drop_path_rate: float = 0.0,
                vit_kwargs: dict[str, Any] | None = None) -> nn.Module:
    kw = dict(vit_kwargs or {})
    if kind == "vit":
        return create_vit(arch, img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                          num_classes=num_classes, global_pool=global_pool,
                          drop_path_rate=drop_path_rate, **kw)
    if kind != "beit":
        raise ValueError(f"unknown model kind {kind!r}")
    from timm.models.beit import Beit
    embed_dim, depth, num_heads, _ = arch_dims(arch)
    kw = {"use_abs_pos_emb": False, "use_rel_pos_bias": True, "init_values": None, **kw}
    model = Beit(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
                 global_pool=global_pool, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                 mlp_ratio=4.0, qkv_bias=True, drop_path_rate=drop_path_rate,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6), **kw)
    model.arch = arch
    return model


def prefix_tokens(model: nn.Module) -> int:
    """Rows of pos_embed before the patch grid (0 for no_embed_class models)."""
    return 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))


def fit_pos_embed(pos: torch.Tensor, grid: tuple[int, int], num_prefix: int) -> torch.Tensor:
    """[1, P + h*w, D] -> [1, P + H*W, D]; identity when the grid already matches. No antialias:
    the official MAE `interpolate_pos_embed`, so official checkpoints load as they do there."""
    return resize_pos_embed(pos, tuple(grid), num_prefix_tokens=num_prefix, antialias=False)


def fit_rel_table(table: torch.Tensor, grid: tuple[int, int], shape: torch.Size) -> torch.Tensor:
    """BEiT relative position table [(2h-1)(2w-1)+3, heads] resized to another window."""
    if table.shape == shape:
        return table
    from timm.layers import resize_rel_pos_bias_table
    return resize_rel_pos_bias_table(table, new_window_size=tuple(grid), new_bias_shape=tuple(shape))


def fit_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of `state` shaped for `model`: grids resized, channels adapted, absent parts dropped."""
    out = dict(state)
    target = model.state_dict()
    grid = tuple(model.patch_embed.grid_size)
    if "pos_embed" in out and getattr(model, "pos_embed", None) is not None:
        out["pos_embed"] = fit_pos_embed(out["pos_embed"], grid, prefix_tokens(model))
    for k in [k for k in out if k.endswith(REL_TABLE) and k in target]:
        out[k] = fit_rel_table(out[k], grid, target[k].shape)
    w = out.get("patch_embed.proj.weight")
    want = target["patch_embed.proj.weight"].shape[1]
    if w is not None and w.shape[1] != want:
        from timm.models._manipulate import adapt_input_conv
        out["patch_embed.proj.weight"] = adapt_input_conv(want, w, base_chans=w.shape[1])
    for part in ("head", "fc_norm", "norm", "attn_pool"):
        keys = [k for k in out if k.startswith(part + ".")]
        if keys and any(k not in target or out[k].shape != target[k].shape for k in keys):
            for k in keys:  # absent from this model (pooling choice) or another class count
                del out[k]
    return out


def resample_patch_embed(vit: nn.Module, size: int) -> None:
    """Give `vit` a size x size patch on the same token grid, in place: the projection kernel is
    resampled with timm's `resample_patch_embed` (the pseudo-inverse of the bicubic resize, so a
    resized patch gets the same response), the bias kept; `patch_embed.patch_size` and `img_size`
    follow (img_size = grid x size), so position embeddings, rotary tables and relative tables,
    all built for the grid, stay valid. The one implementation of detectron2's p14to16 (ViT-H/14
    -> 16 for ViTDet-H): every COCO neck and ADE20K use it (tasks/pyramid.py `pyramid_patch`)."""
    from timm.layers import resample_patch_embed as resample
    pe = vit.patch_embed
    old = pe.proj
    new = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=size, stride=size,
                    bias=old.bias is not None)
    with torch.no_grad():
        new.weight.copy_(resample(old.weight, [size, size]))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    pe.proj = new.to(device=old.weight.device, dtype=old.weight.dtype)
    pe.patch_size = (size, size)
    grid = getattr(pe, "grid_size", None)
    if grid is not None:
        pe.img_size = (grid[0] * size, grid[1] * size)


def load_fitted(model: nn.Module, fitted: dict[str, torch.Tensor], *, fresh: tuple[str, ...], what: str) -> nn.Module:
    """Load `fitted` (fit_state_dict's output) into `model`; the `fresh` parts it lacks start anew
    (init_fresh). Any other missing or unexpected key means the registered file no longer fits
    the model: one line starting with `what`."""
    result = model.load_state_dict(fitted, strict=False)
    bad = [k for k in result.missing_keys if not k.startswith(fresh)]
    if bad or result.unexpected_keys:
        raise MaebenchError(f"{what}: missing {bad[:4]}, unexpected {result.unexpected_keys[:4]}; register it again")
    init_fresh(model, result.missing_keys)
    return model


def init_fresh(model: nn.Module, keys: list[str]) -> None:
    """Initialise the parts the weights did not provide (head, pooling norm) the timm way:
    Linear trunc-normal(0.02) with zero bias, norms reset to identity."""
    from timm.layers import trunc_normal_
    for prefix in sorted({k.rsplit(".", 1)[0] for k in keys}):
        mod = model.get_submodule(prefix)
        with torch.no_grad():
            if isinstance(mod, nn.Linear):
                trunc_normal_(mod.weight, std=0.02)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif hasattr(mod, "reset_parameters"):
                mod.reset_parameters()


def read_weights(path: Path, *, name: str, mmap: bool = False) -> dict[str, Any]:
    """A canonical weights file ({"model", "decoder"?, "maebench"}); mmap leaves tensors on disk."""
    try:
        payload = torch_io.load(path, mmap=mmap)
    except torch_io.CheckpointError as e:
        raise MaebenchError(f"{path}: unreadable weights file ({e.cause}); register '{name}' "
                            "again with --force") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise MaebenchError(f"{path}: not a maebench weights file; register '{name}' again with --force")
    return payload


def build_entry_model(e, state: dict[str, torch.Tensor] | None, *, img_size: int, patch_size: int,
                      in_chans: int, num_classes: int, global_pool: str, drop_path_rate: float,
                      vit_kwargs: dict[str, Any]) -> nn.Module:
    """The model of registry entry `e` with canonical weights `state` (None: random init).

    With weights, a ViT's random init is skipped (every encoder tensor is loaded; ViT-L init alone
    takes seconds) and only the parts the weights lack are initialised, by init_fresh. Model kind
    "timm" (DINOv2, CLIP, EVA-02, ...) is built by backbones/timm_family.py `build`, which uses
    this module (registry.load picks one of the two)."""
    skip = {"weight_init": "skip"} if state is not None and e.model == "vit" else {}
    model = build_model(e.model, e.arch, img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                        num_classes=num_classes, global_pool=global_pool, drop_path_rate=drop_path_rate,
                        vit_kwargs={**skip, **e.vit_kwargs, **vit_kwargs})
    if state is None:
        return model
    fitted = fit_state_dict(state, model)
    fresh = ("head.", "fc_norm.") + (() if any(k.startswith("norm.") for k in fitted) else ("norm.",))
    return load_fitted(model, fitted, fresh=fresh, what=f"{e.weights}: does not fit the model built for '{e.name}'")
