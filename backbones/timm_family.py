"""Modern ViT families built by timm: DINOv2, CLIP / OpenCLIP, EVA-02, SigLIP, DeiT III, BEiT v2.

A backbone of model kind "timm" is `timm.create_model(NAME, pretrained=False, **timm_kwargs)`;
nothing is downloaded. Its weights are the release file converted once, at registration, by the
model's own timm filter (`checkpoint_filter_fn` of the module that registers NAME; DeiT III's with
adapt_layer_scale, as timm's deit.py binds it), and stored in timm's keys at the registered grid.
At load, the same filter resamples position embeddings / relative position tables to the task's
grid. The per-family facts (the feature each protocol reads, the position scheme, the
leaderboard family, the release sizes used to name a model from a file) are in FAMILIES below.

Probe feature (`probe`), as each release's own linear evaluation reads it:
  cls+avg  [cls] after the final norm, concatenated with the mean of the normed patch tokens
           (DINOv2 linear eval, `x_norm_clstoken` + `x_norm_patchtokens.mean`, last block);
           register tokens are not patch tokens and are left out of the mean
  token    [cls] after the final norm (CLIP / OpenCLIP before the image-text projection; DeiT III)
  avg      mean of patch tokens, then fc_norm (EVA-02, BEiT v2; timm's default pool for both)
  map      the attention-pool head's output (SigLIP's MAP head)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from maebench.errors import MaebenchError, UsageError, first_line


@dataclass(frozen=True)
class Family:
    key: str
    label: str
    family: str                       # leaderboard family (catalogue.FAMILIES)
    probe: str                        # cls+avg | token | avg | map (module docstring)
    position: str                     # absolute | rope | relative: the model's own position scheme
    formats: tuple[str, ...]          # release layouts it ships in (FORMAT_NOTES)
    releases: dict = field(default_factory=dict)   # (width, depth, patch, registers) -> timm name


FAMILIES: dict[str, Family] = {f.key: f for f in (
    Family("dinov2", "DINOv2", "self-distillation", "cls+avg", "absolute", ("dinov2", "timm"), {
        (384, 12, 14, 0): "vit_small_patch14_dinov2", (768, 12, 14, 0): "vit_base_patch14_dinov2",
        (1024, 24, 14, 0): "vit_large_patch14_dinov2", (1536, 40, 14, 0): "vit_giant_patch14_dinov2",
        (384, 12, 14, 4): "vit_small_patch14_reg4_dinov2", (768, 12, 14, 4): "vit_base_patch14_reg4_dinov2",
        (1024, 24, 14, 4): "vit_large_patch14_reg4_dinov2", (1536, 40, 14, 4): "vit_giant_patch14_reg4_dinov2"}),
    Family("clip", "CLIP (OpenAI)", "image-text", "token", "absolute", ("openai-clip", "timm"), {
        (768, 12, 16, 0): "vit_base_patch16_clip_224.openai", (1024, 24, 14, 0): "vit_large_patch14_clip_224.openai"}),
    Family("openclip", "OpenCLIP", "image-text", "token", "absolute", ("openai-clip", "openclip-timm", "timm"), {
        (768, 12, 16, 0): "vit_base_patch16_clip_224.laion2b", (1024, 24, 14, 0): "vit_large_patch14_clip_224.laion2b"}),
    Family("eva02", "EVA-02", "mim-feature", "avg", "rope", ("eva02", "timm"), {
        (768, 12, 14, 0): "eva02_base_patch14_224.mim_in22k", (1024, 24, 14, 0): "eva02_large_patch14_224.mim_in22k"}),
    Family("siglip", "SigLIP", "image-text", "map", "absolute", ("openclip-timm", "timm"), {
        (768, 12, 16, 0): "vit_base_patch16_siglip_224"}),
    Family("deit3", "DeiT III", "supervised", "token", "absolute", ("deit3", "timm"), {
        (768, 12, 16, 0): "deit3_base_patch16_224", (1024, 24, 16, 0): "deit3_large_patch16_224"}),
    Family("beit2", "BEiT v2", "mae-token", "avg", "relative", ("beit", "timm"), {
        (768, 12, 16, 0): "beitv2_base_patch16_224"}),
)}

FORMAT_NOTES = {
    "dinov2": "original DINOv2 .pth (facebookresearch/dinov2: mask_token, register_tokens, ls1/ls2)",
    "openai-clip": "OpenAI CLIP / OpenCLIP state dict (visual.conv1, visual.transformer.resblocks.N, visual.proj)",
    "openclip-timm": "OpenCLIP with a timm tower (visual.trunk.*: SigLIP, ...)",
    "eva02": "original EVA-02 (baaivision/EVA: q_proj/k_proj/v_proj, mlp.w1/w2/w3, ffn_ln, mask_token)",
    "deit3": "DeiT III release (facebookresearch/deit: blocks.N.gamma_1/gamma_2, pos_embed without [cls])",
    "beit": "BEiT v2 release (microsoft/unilm: q_bias/v_bias, gamma_1/2, relative position tables)",
    "timm": "timm / Hugging Face hub layout (model.safetensors, pytorch_model.bin)",
}
PRETRAINING_ONLY = ("mask_token", "lm_head.", "cls_pt_layers.", "teacher.", "decoder.")
FRESH_PARTS = ("head.", "fc_norm.", "norm.", "attn_pool.")


def family_of_model(name: str) -> str | None:
    """The family of a timm model name ('vit_small_patch14_reg4_dinov2' -> 'dinov2')."""
    base, _, tag = name.partition(".")
    if base.endswith("_dinov2"):
        return "dinov2"
    if "siglip" in base:
        return "siglip"
    if "_clip_" in base or base.endswith("_clip"):
        return "clip" if tag.startswith("openai") else "openclip"
    for prefix, fam in (("eva02_", "eva02"), ("deit3_", "deit3"), ("beitv2_", "beit2")):
        if base.startswith(prefix):
            return fam
    return None


def recognise(state: dict) -> tuple[str, str] | None:
    """(family, release format) read off a state dict's keys, or None when they say nothing."""
    keys = set(state)
    has = lambda frag: any(frag in k for k in keys)  # noqa: E731
    if "visual.class_embedding" in keys or "module.visual.class_embedding" in keys:
        return "clip", "openai-clip"          # OpenCLIP's own towers share OpenAI's layout
    if has("visual.trunk."):
        return ("siglip" if has("attn_pool.") else "openclip"), "openclip-timm"
    if "mask_token" in keys and has("ls1.gamma") and has("attn.qkv."):   # ViT-g's SwiGLU is mlp.w12 / w3
        return "dinov2", "dinov2"
    if has("attn.q_proj.weight") or has("mlp.w12.") or has("mlp.ffn_ln") or has("mlp.fc1_g.") or has("rope."):
        return "eva02", "eva02" if (has("mlp.w1") or has("mlp.w12") or "mask_token" in keys) else "timm"
    if has("cls_pt_layers.") or (has("attn.q_bias") and has("relative_position_bias_table")):
        return "beit2", "beit"
    if has("attn_pool.latent"):
        return "siglip", "timm"
    if "reg_token" in keys or (has("ls1.gamma") and _patch(state) == 14):
        return "dinov2", "timm"
    if has("gamma_1") and not has("q_bias"):
        return "deit3", "deit3"
    return None


def _patch(state: dict) -> int | None:
    w = next((v for k, v in state.items() if k.endswith(("patch_embed.proj.weight", "conv1.weight"))), None)
    return int(w.shape[-1]) if w is not None and w.ndim == 4 else None


def _vision(state: dict) -> dict:
    """The image tower's tensors (CLIP-style files also hold a text tower)."""
    vis = {k: v for k, v in state.items() if k.startswith("visual.")}
    return vis or state


def release_model(family: str, state: dict) -> str | None:
    """The timm model of a release of `family` with this state dict's width, depth, patch, registers."""
    state = _vision(state)
    w = next((v for k, v in state.items() if k.endswith(("patch_embed.proj.weight", "conv1.weight"))), None)
    blocks = {int(m.group(1)) for k in state if (m := re.search(r"(?:blocks|resblocks)\.(\d+)\.", k))}
    if w is None or not blocks:
        return None
    regs = next((int(v.shape[1]) for k, v in state.items() if k.endswith(("register_tokens", "reg_token"))), 0)
    return FAMILIES[family].releases.get((int(w.shape[0]), max(blocks) + 1, int(w.shape[-1]), regs))


# ---- building -----------------------------------------------------------------------------------
def pretrained_defaults(name: str) -> dict[str, Any]:
    """mean, std, native img_size and patch size from timm's pretrained config of `name`."""
    import timm
    import torch
    with torch.device("meta"):
        m = timm.create_model(name, pretrained=False)
    cfg = m.pretrained_cfg
    p = m.patch_embed.patch_size
    return {"mean": list(cfg.get("mean", (0.485, 0.456, 0.406))), "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
            "img_size": int(cfg.get("input_size", (3, 224, 224))[-1]), "patch_size": int(p[0] if isinstance(p, tuple) else p)}


def _entry_module(name: str) -> str:
    """The timm module that registers model `name` ('timm.models.vision_transformer', ...)."""
    import timm
    return timm.models.model_entrypoint(name.partition(".")[0]).__module__


def filter_fn(name: str):
    """timm's own checkpoint filter for model `name` (the one its pretrained loading applies)."""
    import importlib
    module = importlib.import_module(_entry_module(name))
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        raise UsageError(f"timm model '{name}' has no checkpoint_filter_fn in {module.__name__}: not supported")
    return partial(fn, adapt_layer_scale=True) if module.__name__.endswith(".deit") else fn


def create(name: str, *, meta: bool = False, **kwargs):
    import timm
    import torch
    try:
        if meta:
            with torch.device("meta"):
                return timm.create_model(name, pretrained=False, **kwargs)
        return timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            from maebench.errors import unknown
            raise unknown("timm model", name, timm.list_models(name.split("_")[0] + "*")[:20]) from None
        raise
    except (TypeError, AssertionError, ValueError) as e:
        raise UsageError(f"timm model '{name}' does not take {kwargs}: {first_line(e, 160)}") from None


def model_facts(model) -> dict[str, Any]:
    p = model.patch_embed.patch_size
    return {"embed_dim": int(model.embed_dim), "depth": len(model.blocks),
            "patch_size": int(p[0] if isinstance(p, (tuple, list)) else p),
            "num_prefix_tokens": int(getattr(model, "num_prefix_tokens", 1)),
            "registers": int(getattr(model, "num_reg_tokens", 0) or 0),
            "params": sum(int(t.numel()) for k, t in model.named_parameters() if not k.startswith("head."))}


def _pre_filter(state: dict, family: str | None, notes: list[str]) -> dict:
    """What timm's filter leaves to the caller: BEiT v2's shared relative position table copied
    into every block (as BEiT fine-tuning does) and pretraining-only parts dropped."""
    from maebench.backbones.formats.canonical import depth_of, drop
    state = dict(state)
    if family in ("beit2",) or "rel_pos_bias.relative_position_bias_table" in state:
        drop(state, lambda k: k.startswith(("lm_head.", "cls_pt_layers.")) or k == "mask_token", notes,
             "BEiT v2's masked-image-modelling head, patch-aggregation layers and mask token (pretraining only)")
        shared = state.pop("rel_pos_bias.relative_position_bias_table", None)
        if shared is not None:
            for i in range(depth_of(state)):
                state[f"blocks.{i}.attn.relative_position_bias_table"] = shared.clone()
            notes.append("copied the shared relative position bias table into every block (BEiT fine-tuning does)")
    return state


def convert_release(top: Any, name: str, kwargs: dict[str, Any], path) -> dict[str, Any]:
    """Release file -> timm state dict of `name` built with `kwargs`, by timm's filter.

    Returns {"state", "format", "family", "facts", "notes"}; MaebenchError (one line: found vs
    expected) when the file is another family, another size, or lacks tensors."""
    from maebench.backbones.formats.canonical import strip_prefixes, unwrap
    raw = strip_prefixes(unwrap(top, path))
    found = recognise(raw)
    want = family_of_model(name)
    if found and want and found[0] != want and {found[0], want} != {"clip", "openclip"}:
        raise MaebenchError(f"{path}: reads as {FAMILIES[found[0]].label} ({FORMAT_NOTES[found[1]].split(' (')[0]}), "
                            f"but --timm {name} is a {FAMILIES[want].label} model; nothing registered")
    fmt = found[1] if found else "timm"
    notes: list[str] = []
    model = create(name, meta=True, num_classes=0, **kwargs)
    try:
        state = filter_fn(name)(_pre_filter(raw, want, notes), model)
    except Exception as e:  # noqa: BLE001 - a filter failing on foreign keys is a mismatch
        raise MaebenchError(f"{path}: timm's filter for {name} cannot read it ({type(e).__name__}: "
                            f"{first_line(e, 160)}); nothing registered") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # fp16 releases (CLIP)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if "norm.weight" in state and "norm.weight" not in expected and "fc_norm.weight" in expected \
            and "fc_norm.weight" not in state:      # a pretraining file's final norm, pooled model
        for part in ("weight", "bias"):
            if f"norm.{part}" in state:
                state[f"fc_norm.{part}"] = state.pop(f"norm.{part}")
        notes.append("the release's final norm starts the pooling norm fc_norm (timm does the same for "
                     "EVA-02's MIM weights)")
    dropped = [k for k in state if k not in expected and k.startswith(("head.",) + PRETRAINING_ONLY)]
    for k in dropped:
        del state[k]
    if dropped:
        notes.append(f"dropped {len(dropped)} tensors the backbone does not use ({', '.join(dropped[:3])}): "
                     "the release's projection / classifier / pretraining head; tasks add their own head")
    problems = [f"{k} {list(v.shape)} (expected {list(expected[k])})" for k, v in state.items()
                if k in expected and v.shape != expected[k]]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append("missing " + ", ".join(missing[:3]) + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:3]))
    if problems:
        facts = model_facts(model)
        raise MaebenchError(f"{path}: does not fit timm {name}: found {describe(raw)}, expected width "
                            f"{facts['embed_dim']}, depth {facts['depth']}, patch {facts['patch_size']}"
                            f"{', %d registers' % facts['registers'] if facts['registers'] else ''}: "
                            + "; ".join(problems[:3]) + "; nothing registered")
    notes.append(f"converted by timm's checkpoint filter for {name} from the {FORMAT_NOTES[fmt]}")
    return {"state": state, "format": fmt, "family": want or (found[0] if found else None),
            "facts": model_facts(model), "notes": notes}


def describe(raw: dict) -> str:
    fam = recognise(raw)
    raw = _vision(raw)
    w = next((v for k, v in raw.items() if k.endswith(("patch_embed.proj.weight", "conv1.weight"))), None)
    blocks = {int(m.group(1)) for k in raw if (m := re.search(r"(?:blocks|resblocks)\.(\d+)\.", k))}
    if w is None or w.ndim != 4:
        return "no patch embedding"
    return (f"{FAMILIES[fam[0]].label + ' ' if fam else ''}width {w.shape[0]}, depth {max(blocks) + 1 if blocks else 0}, "
            f"patch {w.shape[-1]}")


# ---- loading for a task ---------------------------------------------------------------------------
def build(e, state: dict | None, *, img_size: int, in_chans: int, num_classes: int, global_pool: str,
          drop_path_rate: float, extra: dict[str, Any]):
    """The timm model of registry entry `e` for a task, with `state` fitted by timm's filter.
    global_pool "probe" keeps the family's own pool (its probe feature, module docstring)."""
    from maebench.backbones.build import fit_state_dict, load_fitted, prefix_tokens
    from maebench.backbones.pos_embed import resize_pos_embed
    fam = FAMILIES.get(e.model_family or "")
    kw = {**e.timm_kwargs, **extra, "img_size": img_size, "num_classes": num_classes, "drop_path_rate": drop_path_rate}
    if in_chans != 3:
        kw["in_chans"] = in_chans
    # "token" on a family without [cls] (SigLIP) keeps its own pool: the attention-pool head
    if global_pool != "probe" and not (global_pool == "token" and fam and fam.probe == "map"):
        kw["global_pool"] = global_pool
    if state is not None and _entry_module(e.timm).endswith(("vision_transformer", "deit")):
        kw["weight_init"] = "skip"        # every tensor is loaded below (ViT-L: 2.3 s instead of 4.6 s)
    model = create(e.timm, **kw)
    model.probe_feature = fam.probe if (fam and global_pool == "probe") else "pre_logits"
    model.timm_layer_groups = True        # maebench.optim: layer decay through timm's group_matcher
    model.arch = e.arch
    if state is None:
        return model
    state = dict(state)
    if "pos_embed" in state and getattr(model, "pos_embed", None) is not None:
        # resized here, so timm's filter finds its grid; antialias as timm's resample_abs_pos_embed
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], tuple(model.patch_embed.grid_size),
                                              num_prefix_tokens=prefix_tokens(model), antialias=True)
    fitted = fit_state_dict(filter_fn(e.timm)(state, model), model)
    return load_fitted(model, fitted, fresh=FRESH_PARTS,
                       what=f"{e.weights}: does not fit timm {e.timm} built for '{e.name}'")


def probe_features(model, x):
    """[N, 3, H, W] -> [N, probe_dim(model)]: the backbone's documented probe feature."""
    return probe_from_tokens(model, model.forward_features(x))


def probe_from_tokens(model, tokens):
    """[N, T, D] tokens after the final norm (prefix tokens first) -> the documented probe
    feature read from them; the linear-probe sweep applies it to earlier blocks' normed tokens too."""
    import torch
    if getattr(model, "probe_feature", None) == "cls+avg":
        p = int(model.num_prefix_tokens)          # [cls] + registers
        return torch.cat([tokens[:, 0], tokens[:, p:].mean(dim=1)], dim=1)
    return model.forward_head(tokens, pre_logits=True)


def probe_dim(model) -> int:
    return int(model.num_features) * (2 if getattr(model, "probe_feature", None) == "cls+avg" else 1)
