"""What a checkpoint says about itself, beyond its tensors: the training arguments saved next to
the weights, the parts only one kind of pretraining has, and the layout its keys read as.

Registration believes the file where the file says something:
  - MAE training checkpoints (facebookresearch/mae, checkpoint-N.pth) store `args`; its
    `norm_pix_loss` decides between the families mae-norm-pixel and mae-pixel, which pick the
    paper row and how `visualize` de-normalises a reconstruction;
  - BEiT training checkpoints store `args` whose `model` is a beit_* name (or a dVAE tokenizer
    option): BEiT's token target, family mae-token;
  - MoCo v3 checkpoints (`arch`, base/momentum encoders): contrastive;
  - an MAE decoder (decoder_*, mask_token) exists only in MAE-style pretraining outputs.
A --format, --family or catalogue claim that contradicts such evidence is refused in one line
naming both, instead of registering weights under the wrong label.
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from maebench.backbones.formats.canonical import is_decoder_key, strip_prefixes, unwrap
from maebench.errors import UsageError

MAE_FAMILIES = ("mae-pixel", "mae-norm-pixel", "mae-pca", "mae-token")
_NAMES = {"mae": "an encoder-only MAE", "mae-full": "a full MAE (encoder and decoder)", "mocov3": "a MoCo v3",
          "beit": "a BEiT", "timm": "a timm ViT", "deit": "a DeiT", "maebench": "a maebench"}
# (asked, found) pairs that are one layout read two ways, not a contradiction
_COMPATIBLE = {("mae", "mae-full"), ("mae", "timm"), ("timm", "deit"), ("deit", "timm"), ("timm", "mae"),
               ("deit", "mae"), ("mae", "maebench"), ("mae-full", "maebench"), ("timm", "maebench")}


@dataclass(frozen=True)
class Evidence:
    family: str | None            # the family the file states, or None
    allowed: tuple[str, ...]      # families consistent with the file (empty: any)
    why: str                      # what in the file says so


def training_args(top: Any) -> dict[str, Any]:
    """The `args` a training script saved with the weights (argparse.Namespace or a dict)."""
    args = top.get("args") if isinstance(top, Mapping) else None
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, Mapping) else {}


def _has_head(state: Mapping) -> bool:
    w = state.get("head.weight")
    return w is not None and getattr(w, "ndim", 0) == 2


def describe(found: str, state: Mapping) -> str:
    """Why the keys read as `found`, in words."""
    head = "a classifier head" if _has_head(state) else "no classifier head"
    return {"mocov3": "its keys are MoCo v3's (module.base_encoder.*)",
            "beit": "it has BEiT's q_bias/v_bias or relative position bias tables",
            "mae-full": "it has an MAE decoder (decoder_*, mask_token)",
            "deit": f"ViT weights under 'model' with {head}, or DeiT's distillation token or layer scale",
            "timm": f"a flat ViT state dict with {head}",
            "mae": "ViT weights under 'model' with no MAE decoder and no classifier head",
            "maebench": "it carries maebench metadata"}.get(found, found)


def check_format(top: Any, asked: str, path) -> None:
    """A UsageError when --format `asked` contradicts what the file's keys read as."""
    from maebench.backbones.formats import detect

    found = detect(top, path)
    state = strip_prefixes(unwrap(top, path))
    head_on_mae = asked in ("mae", "mae-full") and _has_head(state)
    if (found == asked or (asked, found) in _COMPATIBLE) and not head_on_mae:
        return
    why = describe(found, state) if not head_on_mae else "it has a classifier head, which MAE pretraining files do not"
    raise UsageError(f"{path}: --format {asked} contradicts the file, which reads as {found} ({why}), so it is not "
                     f"{_NAMES.get(asked, asked)} checkpoint; drop --format to read it as {found}.")


def family(top: Any, path, fmt: str) -> Evidence:
    """The family the file states (see the module docstring), read as format `fmt`."""
    args = training_args(top)
    if "norm_pix_loss" in args:
        fam = "mae-norm-pixel" if args["norm_pix_loss"] else "mae-pixel"
        return Evidence(fam, (fam,), f"its training args say norm_pix_loss={args['norm_pix_loss']}")
    model = str(args.get("model") or "")
    if model.startswith("beit") or "discrete_vae_type" in args:
        return Evidence("mae-token", ("mae-token",), f"its training args name a BEiT model ({model or 'dVAE tokens'})")
    if fmt == "mocov3":
        arch = top.get("arch") if isinstance(top, Mapping) else None
        return Evidence("contrastive", ("contrastive",),
                        f"it is a MoCo v3 checkpoint{f' (arch {arch})' if isinstance(arch, str) else ''}")
    try:
        decoder = any(is_decoder_key(k) for k in strip_prefixes(unwrap(top, path)))
    except Exception:  # noqa: BLE001 - a file without tensors is reported by the converter
        decoder = False
    if decoder:
        return Evidence(None, MAE_FAMILIES, "it has an MAE decoder (decoder_*, mask_token)")
    return Evidence(None, (), "")


def resolve_family(evidence: Evidence, claims: list[tuple[str | None, str]], default: str | None, path) -> str | None:
    """The family to record: the file's own word, else the first claim ((family, 'who says it'),
    e.g. (--family, "--family")), else `default`; a claim the evidence rules out is a UsageError."""
    for fam, who in claims:
        if fam is not None and evidence.allowed and fam not in evidence.allowed:
            raise UsageError(f"{path}: {evidence.why}, so its family is {evidence.family or ' or '.join(evidence.allowed)}, "
                             f"not {fam} as {who} says; drop that claim, or register another file.")
    if evidence.family:
        return evidence.family
    for fam, _ in claims:
        if fam is not None:
            return fam
    return default
