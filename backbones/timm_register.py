"""Registration of a timm-built backbone: `maebench backbones register NAME --checkpoint FILE --timm MODEL`.

    recognised_model(top, path) -> timm name | None   a DINOv2 / CLIP / OpenCLIP / EVA-02 / SigLIP
                                                      file read by content (no --timm given)
    prepare(name, path, top, model, kwargs, ...) -> (registry record, canonical payload)

The record holds what every task needs from the model (backbones/timm_family.py): the timm name
and options, the conversion applied, mean / std, native image size and patch size from timm's
pretrained config (overridden by --mean/--std/--img-size/--patch-size), the probe feature, the
family for the leaderboard, depth and parameter count.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from maebench.backbones import timm_family as tf
from maebench.errors import MaebenchError, unknown

# families a file is registered as without --timm (the others keep today's formats: deit, beit)
AUTO_FAMILIES = ("dinov2", "clip", "openclip", "eva02", "siglip")
GIANT = {(1536, 40): "vit-giant"}


def recognised_model(top: Any, path) -> tuple[str, dict] | None:
    """(timm model, its options) for a file of a family maebench's own formats cannot read, or
    for maebench's own weights file of a timm-built backbone; None for any other file (it goes
    through today's detection). MaebenchError for a recognised family at a size no release has:
    the user names the model with --timm."""
    from maebench.backbones.formats.canonical import strip_prefixes, unwrap
    if isinstance(top, Mapping) and isinstance(top.get("maebench"), Mapping):
        meta = top["maebench"]
        if meta.get("model") != "timm":
            return None
        return meta["timm"], {**(meta.get("timm_kwargs") or {}), "img_size": meta.get("img_size")}
    raw = strip_prefixes(unwrap(top, path))
    found = tf.recognise(raw)
    if found is None or found[0] not in AUTO_FAMILIES:
        return None
    name = tf.release_model(found[0], raw)
    if name is None:
        fam = tf.FAMILIES[found[0]]
        sizes = ", ".join(sorted(set(fam.releases.values())))
        raise MaebenchError(f"{path}: reads as {fam.label} ({tf.FORMAT_NOTES[found[1]].split(' (')[0]}) with "
                            f"{tf.describe(raw)}, which is no {fam.label} release ({sizes}); pass --timm MODEL "
                            "(and --timm-arg KEY=VALUE for other sizes)")
    return name, {}


def suggestion(top: Any, path) -> list[str]:
    """A note naming the timm model of a DeiT III / BEiT v2 file that today's formats read."""
    from maebench.backbones.formats.canonical import strip_prefixes, unwrap
    try:
        raw = strip_prefixes(unwrap(top, path))
    except MaebenchError:
        return []
    found = tf.recognise(raw)
    name = tf.release_model(found[0], raw) if found else None
    if not name:
        return []
    return [f"also recognised as {tf.FAMILIES[found[0]].label}: --timm {name} builds timm's own model "
            "and converts the file with its checkpoint filter"]


def arch_label(embed_dim: int, depth: int) -> str:
    """vit-small / vit-base / ... when the width and depth are one of maebench's architectures."""
    from maebench.backbones.catalogue import infer_arch
    return infer_arch(embed_dim, depth) or GIANT.get((embed_dim, depth)) or f"vit-d{embed_dim}x{depth}"


def conversion_name(model: str) -> str:
    fn = tf.filter_fn(model)
    if isinstance(fn, partial):
        args = ", ".join(f"{k}={v}" for k, v in fn.keywords.items())
        return f"timm.models.deit: partial({fn.func.__module__}.{fn.func.__name__}, {args})"
    return f"{fn.__module__}.{fn.__name__}"


def prepare(name: str, path, top: Any, model: str, kwargs: dict[str, Any], *, cat: dict | None,
            family: str | None, source: str | None, patch_size: int | None, img_size: int | None,
            mean, std) -> tuple[dict, dict]:
    from maebench.backbones.catalogue import FAMILIES
    from maebench.backbones.convert import file_digest
    defaults = tf.pretrained_defaults(model)
    kwargs = dict(kwargs)
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    img = int(img_size or kwargs.pop("img_size", None) or (cat or {}).get("img_size") or defaults["img_size"])
    kwargs.pop("img_size", None)
    conv = tf.convert_release(top, model, {**kwargs, "img_size": img}, path)
    facts, fam_key = conv["facts"], conv["family"]
    fam = tf.FAMILIES.get(fam_key or "")
    board = family or (cat or {}).get("family") or (fam.family if fam else None)
    if board is None:
        raise MaebenchError(f"{path}: timm model {model} is none of the families maebench knows "
                            f"({', '.join(tf.FAMILIES)}); pass --family ({', '.join(FAMILIES)})")
    if board not in FAMILIES:
        raise unknown("family", board, FAMILIES)
    if img % facts["patch_size"]:
        raise MaebenchError(f"image size {img} is not a multiple of patch size {facts['patch_size']}")
    mean = list(mean or (cat or {}).get("mean") or defaults["mean"])
    std = list(std or (cat or {}).get("std") or defaults["std"])
    sha, size = file_digest(path)
    arch = arch_label(facts["embed_dim"], facts["depth"])
    probe = fam.probe if fam else "pre_logits"
    record = {"arch": arch, "patch_size": facts["patch_size"], "img_size": img, "in_chans": 3,
              "mean": mean, "std": std, "family": board, "model": "timm", "timm": model, "timm_kwargs": kwargs,
              "model_family": fam_key, "probe": probe, "conversion": conversion_name(model),
              "params": facts["params"], "depth": facts["depth"], "format": conv["format"], "has_decoder": False,
              "sha256": sha, "size": size, "source_path": str(path), "source": source or (cat or {}).get("source") or str(path),
              "registered": time.time(), "weights": f"weights/{name}.pth", "conversion_notes": conv["notes"]}
    if cat is None:
        record["paper"] = []
        record["notes"] = f"{fam.label if fam else model}: probe feature {probe}; {facts['registers']} register tokens" \
            if facts["registers"] else f"{fam.label if fam else model}: probe feature {probe}"
    meta = {k: record[k] for k in ("arch", "patch_size", "img_size", "in_chans", "family", "model", "timm",
                                   "timm_kwargs", "model_family", "probe", "conversion", "mean", "std")}
    payload = {"model": conv["state"], "maebench": {**meta, "vit_kwargs": {}, "source_format": conv["format"],
                                                    "source_sha256": sha}}
    return record, payload
