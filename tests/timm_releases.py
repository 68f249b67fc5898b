"""Tiny random models of each timm family, written in the key layouts their releases use.

Each writer inverts what timm's `checkpoint_filter_fn` expects, so reading the file back through
timm's filter gives the source model's state dict; the source model is then "timm's own model
loaded from the same weights" that a registered backbone must reproduce.

    FAMILIES[key] = (timm name, image size, {format: writer(state dict) -> object to save})
"""
from __future__ import annotations

import re

import torch

SMALL = {"embed_dim": 32, "depth": 4, "num_heads": 2}
TIMM_ARGS = [arg for k, v in SMALL.items() for arg in ("--timm-arg", f"{k}={v}")]


def source_model(name: str, img_size: int, **extra):
    """A seeded random timm model with non-trivial layer scales and biases (timm initialises
    DINOv2's layer scale at 1e-5 and biases at 0, which would hide a wrongly loaded block)."""
    import timm
    torch.manual_seed(0)
    m = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, **SMALL, **extra)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.endswith(("gamma", "gamma_1", "gamma_2")):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif k.endswith(("bias", "relative_position_bias_table")) or "token" in k:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return m.eval()


# ---- release layouts --------------------------------------------------------------------------
def dinov2_original(sd: dict) -> dict:
    """facebookresearch/dinov2 *_pretrain.pth: flat keys, mask_token, and for register models
    register_tokens with a pos_embed that covers [cls] (timm folds that row into cls_token)."""
    out = dict(sd)
    dim = sd["cls_token"].shape[-1]
    if "reg_token" in out:
        pos0 = 0.02 * torch.randn(1, 1, dim, generator=torch.Generator().manual_seed(2))
        out["register_tokens"] = out.pop("reg_token")
        out["pos_embed"] = torch.cat([pos0, out["pos_embed"]], dim=1)
        out["cls_token"] = out["cls_token"] - pos0
    out["mask_token"] = torch.zeros(1, dim)
    return out


def dinov2_original_swiglu(sd: dict) -> dict:
    """dinov2_vitg14_pretrain.pth: as dinov2_original, with the SwiGLU MLP as mlp.w12 / mlp.w3."""
    out = dinov2_original(sd)
    return {k.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3."): v for k, v in out.items()}


CLIP_SWAPS = [("patch_embed.proj", "conv1"), ("norm_pre", "ln_pre"), ("blocks.", "transformer.resblocks."),
              ("norm1", "ln_1"), ("norm2", "ln_2"), ("attn.qkv.", "attn.in_proj_"), ("attn.proj", "attn.out_proj"),
              ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]


def openai_clip(sd: dict, proj_dim: int = 16) -> dict:
    """OpenAI CLIP / OpenCLIP state dict: the image tower under visual.* (conv1, class_embedding,
    positional_embedding [N, D], ln_pre, resblocks, ln_post, proj [D, E]) beside a text tower."""
    out = {}
    for k, v in sd.items():
        if k == "cls_token":
            out["visual.class_embedding"] = v.reshape(-1)
        elif k == "pos_embed":
            out["visual.positional_embedding"] = v[0]
        elif k.startswith("norm."):
            out["visual.ln_post." + k[5:]] = v
        else:
            for a, b in CLIP_SWAPS:
                k = k.replace(a, b)
            out["visual." + k] = v
    dim = sd["cls_token"].shape[-1]
    g = torch.Generator().manual_seed(3)
    out["visual.proj"] = torch.randn(dim, proj_dim, generator=g)
    out.update({"token_embedding.weight": torch.randn(10, 8, generator=g), "positional_embedding": torch.randn(5, 8),
                "transformer.resblocks.0.ln_1.weight": torch.ones(8), "ln_final.weight": torch.ones(8),
                "text_projection": torch.randn(8, proj_dim), "logit_scale": torch.tensor(4.6)})
    return out


class TorchScript:
    """OpenAI's own ViT-*.pt: a TorchScript archive (torch.jit.save) of the whole CLIP model."""

    def __init__(self, state: dict):
        import torch.nn as nn
        root = nn.Module()
        for k, v in state.items():
            *path, leaf = k.split(".")
            m = root
            for p in path:
                if p not in m._modules:
                    m.add_module(p, nn.Module())
                m = m._modules[p]
            m.register_parameter(leaf, nn.Parameter(v, requires_grad=False))
        self.module = torch.jit.script(root)


def openai_clip_torchscript(sd: dict) -> TorchScript:
    return TorchScript(openai_clip(sd))


def openclip_training_checkpoint(sd: dict) -> dict:
    """An OpenCLIP training checkpoint: {"epoch", "name", "state_dict": {"module.visual...": ...}}."""
    return {"epoch": 32, "name": "tiny", "state_dict": {"module." + k: v for k, v in openai_clip(sd).items()}}


def openclip_timm_tower(sd: dict) -> dict:
    """OpenCLIP with a timm image tower (SigLIP's open_clip_pytorch_model.bin): visual.trunk.*."""
    out = {"visual.trunk." + k: v for k, v in sd.items()}
    out.update({"text.token_embedding.weight": torch.randn(10, 8), "text.transformer.resblocks.0.ln_1.weight": torch.ones(8),
                "logit_scale": torch.tensor(2.3), "logit_bias": torch.tensor(-10.0)})
    return out


EVA_SWAPS = [("mlp.fc1_g", "mlp.w1"), ("mlp.fc1_x", "mlp.w2"), ("mlp.fc2", "mlp.w3"), ("mlp.norm", "mlp.ffn_ln"),
             ("attn.q_proj.bias", "attn.q_bias"), ("attn.v_proj.bias", "attn.v_bias")]


def eva02_original(sd: dict) -> dict:
    """baaivision/EVA EVA-02 MIM checkpoint: {"module": ...} with SwiGLU w1/w2/w3, ffn_ln, q_bias /
    v_bias, the final `norm` (timm reads it into fc_norm), mask_token, lm_head and rope buffers."""
    out = {}
    for k, v in sd.items():
        for a, b in EVA_SWAPS:
            k = k.replace(a, b)
        out[re.sub(r"^fc_norm\.", "norm.", k)] = v
    dim = sd["cls_token"].shape[-1]
    out.update({"mask_token": torch.zeros(1, 1, dim), "lm_head.weight": torch.randn(24, dim), "lm_head.bias": torch.zeros(24),
                "rope.freqs_cos": torch.ones(16, 8), "rope.freqs_sin": torch.zeros(16, 8)})
    return {"module": out}


def deit3_release(sd: dict, classes: int = 5) -> dict:
    """facebookresearch/deit deit_3_*.pth: {"model": ...} with gamma_1 / gamma_2 and the classifier."""
    out = {re.sub(r"ls([12])\.gamma$", r"gamma_\1", k): v for k, v in sd.items()}
    dim = sd["cls_token"].shape[-1]
    out.update({"head.weight": torch.randn(classes, dim), "head.bias": torch.zeros(classes)})
    return {"model": out}


def beit2_pretrain(sd: dict) -> dict:
    """microsoft/unilm beitv2 *_pt1k.pth: {"model": ...} with one shared relative position table
    (the source model's tables are made equal first), the final `norm`, the MIM head, the
    patch-aggregation layers and mask token."""
    out = {k: v for k, v in sd.items() if not k.endswith("relative_position_bias_table")}
    out = {re.sub(r"^fc_norm\.", "norm.", k): v for k, v in out.items()}
    out["rel_pos_bias.relative_position_bias_table"] = sd["blocks.0.attn.relative_position_bias_table"]
    dim = sd["cls_token"].shape[-1]
    out.update({"mask_token": torch.zeros(1, 1, dim), "lm_head.weight": torch.randn(32, dim), "lm_head.bias": torch.zeros(32),
                "cls_pt_layers.0.norm1.weight": torch.ones(dim)})
    return {"model": out}


def shared_beit_tables(model) -> None:
    with torch.no_grad():
        first = model.blocks[0].attn.relative_position_bias_table
        for b in model.blocks[1:]:
            b.attn.relative_position_bias_table.copy_(first)


def hub(sd: dict) -> dict:
    """timm / Hugging Face hub model.safetensors: the timm keys themselves."""
    return dict(sd)


# family -> (timm model, image size, {release format: writer}, extra model options)
FAMILIES = {
    "dinov2": ("vit_small_patch14_dinov2", 56, {"dinov2": dinov2_original, "timm": hub}),
    "dinov2-giant": ("vit_giant_patch14_dinov2", 56, {"dinov2": dinov2_original_swiglu}),
    "dinov2-reg4": ("vit_small_patch14_reg4_dinov2", 56, {"dinov2": dinov2_original, "timm": hub}),
    "clip": ("vit_base_patch16_clip_224.openai", 64, {"openai-clip": openai_clip, "openai-jit": openai_clip_torchscript}),
    "openclip": ("vit_base_patch16_clip_224.laion2b", 64, {"openai-clip": openclip_training_checkpoint}),
    "siglip": ("vit_base_patch16_siglip_224", 64, {"openclip-timm": openclip_timm_tower, "timm": hub}),
    "eva02": ("eva02_base_patch14_224.mim_in22k", 56, {"eva02": eva02_original}),
    "deit3": ("deit3_base_patch16_224", 64, {"deit3": deit3_release}),
    "beit2": ("beitv2_base_patch16_224", 64, {"beit": beit2_pretrain}),
}


def write(path, obj) -> None:
    if isinstance(obj, TorchScript):
        obj.module.save(str(path))
    elif str(path).endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
