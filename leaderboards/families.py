"""A backbone's pretraining family and model size, for grouping rows and matching paper rows.

Read from the results rows alone: a run records its backbone's family, architecture and paper
rows when it starts (config keys `backbone_family`, `backbone_arch`, `backbone_paper`; see
maebench/runs.py), so rendering never consults the live registry and a backbone removed since
still renders. Rows without the record (older stores) fall back to `arch`, then "unknown".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable


FAMILY_ORDER = ("supervised", "contrastive", "self-distillation", "image-text", "mim-feature",
                "mae-pixel", "mae-norm-pixel", "mae-pca", "mae-token", "scratch")
FAMILY_LABELS = {"supervised": "supervised", "contrastive": "contrastive",
                 "self-distillation": "self-distillation", "image-text": "image-text",   # DINOv2; CLIP, SigLIP
                 "mim-feature": "MIM features",                                          # EVA-02, BEiT v2
                 "mae-pixel": "MAE pixel", "mae-norm-pixel": "MAE norm-pixel", "mae-pca": "MAE PCA",
                 "mae-token": "MAE token", "scratch": "scratch", "unknown": "unknown"}
UNKNOWN = "unknown"

_ARCH_RE = re.compile(r"vit[-_/ ]?(tiny|small|base|large|huge|ti|s|b|l|h)(?![a-z])", re.I)
_ARCH_SIZES = {"ti": "tiny", "s": "small", "b": "base", "l": "large", "h": "huge"}


@dataclass(frozen=True)
class BackboneInfo:
    family: str
    arch: str | None     # canonical "vit-base" etc., None when unknown
    paper: tuple[str, ...] = ()   # registry paper-row keys ("mae/vit-b") this backbone stands for


def canonical_arch(arch: str | None) -> str | None:
    """'vit-large', 'vit_large_patch16_224', 'ViT-L/16' -> 'vit-large'; other names unchanged."""
    if not arch:
        return None
    m = _ARCH_RE.search(str(arch))
    if not m:
        return str(arch)
    size = m.group(1).lower()
    return f"vit-{_ARCH_SIZES.get(size, size)}"


def family_sort_key(family: str) -> tuple:
    if family in FAMILY_ORDER:
        return (0, FAMILY_ORDER.index(family), "")
    return (2 if family == UNKNOWN else 1, 0, family)


def family_label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def lookup(name: str, configs: Iterable[dict]) -> BackboneInfo:
    """Family and size of backbone `name`; `configs` are the stored configs of its runs."""
    family, arch, paper = None, None, ()
    for cfg in configs:
        family = family or cfg.get("backbone_family")
        arch = arch or cfg.get("backbone_arch") or cfg.get("arch")
        paper = paper or tuple(cfg.get("backbone_paper") or ())
    if family:
        return BackboneInfo(str(family), canonical_arch(arch), paper)
    return BackboneInfo(UNKNOWN, canonical_arch(arch))
