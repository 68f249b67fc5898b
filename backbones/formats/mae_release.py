"""Official MAE files (facebookresearch/mae) and maebench's own pretraining outputs.

mae       {"model": encoder}: timm ViT keys, no decoder, no head (mae_pretrain_vit_*.pth)
mae-full  {"model": encoder + decoder_* + mask_token} (mae_visualize_vit_large.pth, *_full.pth,
          training checkpoints checkpoint-N.pth)
maebench  a mae-full layout or a plain ViT state dict, with a "maebench" metadata dict
          ({"arch", "patch_size", "img_size", "family", ...}) next to the weights, so that
          `maebench pretrain` outputs register without --arch; the canonical files maebench
          writes to $MAEBENCH_HOME/weights are in this format too ({"model", "decoder", "maebench"})
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maebench.backbones.formats.canonical import Converted, split_decoder, strip_prefixes, tensors_only, unwrap
from maebench.errors import MaebenchError


def convert_mae(top: Any, path, *, full: bool) -> Converted:
    fmt = "mae-full" if full else "mae"
    enc, dec = split_decoder(strip_prefixes(unwrap(top, path)))
    notes: list[str] = []
    if full and not dec:
        raise MaebenchError(f"{path}: no MAE decoder keys (decoder_*, mask_token): not a full MAE "
                            "checkpoint; use --format mae for an encoder-only file")
    if not full:
        if dec:
            notes.append(f"dropped the MAE decoder ({len(dec)} tensors) as --format mae asks; "
                         "use --format mae-full to keep it for reconstruction figures")
            dec = {}
        else:
            notes.append("encoder-only MAE file: no decoder and no classifier head, as released (fine)")
    return Converted(fmt, enc, dec, notes=notes)


def convert_maebench(top: Any, path) -> Converted:
    meta = top.get("maebench") if isinstance(top, Mapping) else None
    if not isinstance(meta, Mapping):
        raise MaebenchError(f"{path}: no 'maebench' metadata dict: not a maebench checkpoint")
    state = unwrap(top, path)
    if isinstance(top.get("decoder"), Mapping):  # maebench's canonical files keep it apart
        state = {**state, **tensors_only(top["decoder"])}
    enc, dec = split_decoder(strip_prefixes(state))
    meta = dict(meta)
    conv = Converted("maebench", enc, dec, meta=meta,
                     model=meta.pop("model", "vit"), vit_kwargs=dict(meta.pop("vit_kwargs", None) or {}))
    conv.notes.append("maebench checkpoint: " + ("encoder and MAE decoder" if dec else "encoder only, no decoder"))
    return conv
