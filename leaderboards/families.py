"""A backbone's pretraining family and model size, for grouping rows and matching paper rows.

The backbone registry is the authority (`backbones.registry.entry(name)` with `.family`,
`.arch` and, where present, `.paper`: the paper rows the backbone stands for). It is imported lazily, so rendering works without torch and for results whose
backbone has since been removed from the registry: then the run's own config keys
`backbone_family` / `backbone_arch` (or `arch`) are used, and failing those "unknown".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from maebench.errors import MaebenchError

FAMILY_ORDER = ("supervised", "contrastive", "mae-pixel", "mae-norm-pixel", "mae-token", "scratch")
FAMILY_LABELS = {"supervised": "supervised", "contrastive": "contrastive",
                 "mae-pixel": "MAE pixel", "mae-norm-pixel": "MAE norm-pixel",
                 "mae-token": "MAE token", "scratch": "scratch", "unknown": "unknown"}
UNKNOWN = "unknown"

_ARCH_RE = re.compile(r"vit[-_/ ]?(tiny|small|base|large|huge|ti|s|b|l|h)(?![a-z])", re.I)
_ARCH_SIZES = {"ti": "tiny", "s": "small", "b": "base", "l": "large", "h": "huge"}


@dataclass(frozen=True)
class BackboneInfo:
    family: str
    arch: str | None     # canonical "vit-base" etc., None when unknown
    source: str          # "registry", "config" or "unknown": where the family came from
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


def _registry_entry(name: str):
    try:
        from backbones import registry
    except ImportError:
        return None
    try:
        return registry.entry(name)
    except (MaebenchError, LookupError, FileNotFoundError, ValueError):
        return None


def lookup(name: str, configs: Iterable[dict]) -> BackboneInfo:
    """Family and size of backbone `name`; `configs` are the effective configs of its runs."""
    entry = _registry_entry(name)
    if entry is not None and getattr(entry, "family", None):
        return BackboneInfo(str(entry.family), canonical_arch(getattr(entry, "arch", None)), "registry",
                            tuple(getattr(entry, "paper", None) or ()))
    family, arch = None, None
    for cfg in configs:
        family = family or cfg.get("backbone_family")
        arch = arch or cfg.get("backbone_arch") or cfg.get("arch")
    if family:
        return BackboneInfo(str(family), canonical_arch(arch), "config")
    return BackboneInfo(UNKNOWN, canonical_arch(arch), "unknown")
