"""Checkpoint formats: detection from the keys, and conversion to the canonical layout.

One module per family of published layouts; each turns the loaded file into a `Converted`
(canonical encoder keys, MAE decoder keys if any, model kind, notes). Shapes are checked
afterwards against the architecture, in backbones/convert.py.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maebench.backbones.formats.beit_release import convert_beit, is_beit
from maebench.backbones.formats.canonical import Converted, is_decoder_key, strip_prefixes, unwrap
from maebench.backbones.formats.mae_release import convert_mae, convert_maebench
from maebench.backbones.formats.mocov3_release import convert_mocov3, is_mocov3
from maebench.backbones.formats.timm_vit import convert_timm
from maebench.errors import unknown

FORMATS = ("auto", "mae", "mae-full", "mocov3", "beit", "timm", "deit", "maebench")

__all__ = ["FORMATS", "Converted", "detect", "convert"]


def detect(top: Any, path) -> str:
    """The format of a loaded checkpoint, read off its keys."""
    if isinstance(top, Mapping) and isinstance(top.get("maebench"), Mapping):
        return "maebench"
    raw = unwrap(top, path)
    if is_mocov3(raw):
        return "mocov3"
    state = strip_prefixes(raw)
    if is_beit(state):
        return "beit"
    if any(is_decoder_key(k) for k in state):
        return "mae-full"
    if "dist_token" in state or any(k.endswith(("gamma_1", "ls1.gamma")) for k in state):
        return "deit"
    wrapped = isinstance(top, Mapping) and isinstance(top.get("model"), Mapping)
    has_head = any(k.startswith("head.") for k in state)
    if wrapped:
        return "deit" if has_head else "mae"
    return "timm"


def convert(top: Any, fmt: str, path) -> Converted:
    """Convert a loaded checkpoint read as `fmt` ("auto": detected) to the canonical layout."""
    if fmt not in FORMATS:
        raise unknown("checkpoint format", fmt, FORMATS)
    if fmt == "auto":
        fmt = detect(top, path)
    if fmt in ("mae", "mae-full"):
        return convert_mae(top, path, full=fmt == "mae-full")
    if fmt == "maebench":
        return convert_maebench(top, path)
    if fmt == "mocov3":
        return convert_mocov3(top, path)
    if fmt == "beit":
        return convert_beit(top, path)
    return convert_timm(top, path, fmt=fmt)
