"""Checkpoint file -> canonical backbone weights: safe reading, conversion, shape checks.

A checkpoint is a pickle, and full unpickling runs whatever code the file carries, so files are
read with maebench.torch_io.load (weights_only: tensors, containers, numbers, strings, and
argparse.Namespace, which training scripts store as "args"); anything more is refused unless
the caller trusts the file. `.safetensors` files are read with safetensors.

The canonical file ($MAEBENCH_HOME/weights/NAME.pth) is
    {"model":   encoder state dict of the model `load` builds (timm VisionTransformer keys; timm
                Beit keys for BEiT with relative position bias), pos_embed at the entry's grid,
     "decoder": official MAE decoder keys (decoder_*, mask_token), only when the source had them,
     "maebench": {"arch", "patch_size", "img_size", "in_chans", "family", "model", "vit_kwargs",
                  "mean", "std", "source_format", "source_sha256", + a maebench source's own metadata}}
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from maebench.backbones.catalogue import arch_dims, arch_names, infer_arch
from maebench.backbones.formats import Converted, convert, detect
from maebench.backbones.formats.canonical import OPTIONAL_PREFIXES, square_side
from maebench import torch_io
from maebench.backbones.build import REL_TABLE, build_model, fit_pos_embed, fit_rel_table
from maebench.errors import MaebenchError, UsageError, first_line

SHOW_PROBLEMS = 4


@dataclass(frozen=True)
class Spec:
    arch: str
    patch_size: int
    img_size: int
    in_chans: int

_VITDET_REL = re.compile(r"blocks\.\d+\.attn\.rel_pos_[hw]")


def read_checkpoint(path: str | Path, *, trust: bool = False) -> Any:
    """The loaded file; MaebenchError when it is missing, corrupt, or needs untrusted unpickling."""
    path = Path(path)
    if not path.is_file():
        raise MaebenchError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any failure means an unreadable file
            raise MaebenchError(f"{path}: cannot read safetensors file, truncated or corrupt ({first_line(e, 160, typed=True)}).") from None
    if _is_torchscript(path):
        if not trust:
            raise MaebenchError(f"{path}: refused: a TorchScript archive (as OpenAI CLIP's ViT-*.pt are); reading it "
                                "runs its TorchScript code; if you trust its source, pass --trust-checkpoint")
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as e:  # noqa: BLE001 - a damaged archive
            raise MaebenchError(f"{path}: cannot read TorchScript archive ({first_line(e, 160, typed=True)})") from None
    return torch_io.load(path, trust=trust)


def _is_torchscript(path: Path) -> bool:
    """A zip with a TorchScript `code/` folder (torch.jit.save), not a torch.save checkpoint."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 2)[1:2] == ["code"] for n in z.namelist()[:200])
    except (zipfile.BadZipFile, OSError):
        return False


def file_digest(path: str | Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file."""
    from maebench import disk
    return disk.file_digest(path), os.path.getsize(path)


def infer(conv: Converted) -> dict[str, Any]:
    """What the weights themselves say: width, depth, arch, patch size, channels, image size."""
    enc, out = conv.encoder, {}
    w = enc.get("patch_embed.proj.weight")
    if w is not None and w.ndim == 4:
        out.update(embed_dim=w.shape[0], in_chans=w.shape[1], patch_size=w.shape[-1])
    depth = 1 + max((int(m.group(1)) for k in enc if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if "embed_dim" in out and depth:
        out["depth"] = depth
        out["arch"] = infer_arch(out["embed_dim"], depth)
    grid = _grid_of(conv)
    if grid and "patch_size" in out:
        out["img_size"] = grid * out["patch_size"]
    return out


def _grid_of(conv: Converted) -> int | None:
    pos = conv.encoder.get("pos_embed")
    if pos is not None and pos.ndim == 3:
        return square_side(pos.shape[1] - conv.num_prefix_tokens)
    table = next((v for k, v in conv.encoder.items() if k.endswith(REL_TABLE)), None)
    if table is not None:
        side = square_side(table.shape[0] - 3)  # (2g-1)^2 + 3 rows
        return (side + 1) // 2 if side else None
    return None


def resolve_spec(conv: Converted, *, explicit: dict[str, Any], defaults: dict[str, Any], path) -> Spec:
    """Each field from the first that has it: explicit options, file metadata, catalogue, weights."""
    inferred = infer(conv)
    values = {}
    for key in ("arch", "patch_size", "img_size", "in_chans"):
        for source in (explicit, conv.meta, defaults, inferred):
            if source.get(key) is not None:
                values[key] = source[key]
                break
    if values.get("arch") is None:
        seen = (f"width {inferred['embed_dim']}, depth {inferred['depth']} matches none of {', '.join(arch_names())}"
                if "depth" in inferred else "no ViT patch embedding (patch_embed.proj.weight) in it")
        raise UsageError(f"{path}: cannot tell the architecture ({seen}); pass --arch")
    arch_dims(values["arch"])  # unknown architecture -> UsageError with suggestions
    values.setdefault("patch_size", arch_dims(values["arch"])[3])
    values.setdefault("in_chans", 3)
    values.setdefault("img_size", 224)
    if values["img_size"] % values["patch_size"]:
        raise UsageError(f"image size {values['img_size']} is not a multiple of patch size {values['patch_size']}")
    return Spec(**values)


def check_and_fit(conv: Converted, spec: Spec, path) -> Converted:
    """Check every tensor against the architecture; pos_embed (and BEiT tables) are compared after
    resizing to the spec's grid. Returns the converted weights at that grid."""
    skip_init = {"weight_init": "skip"} if conv.model == "vit" else {}  # only shapes are needed
    with torch.device("meta"):
        model = build_model(conv.model, spec.arch, img_size=spec.img_size, patch_size=spec.patch_size,
                            in_chans=spec.in_chans, vit_kwargs={**conv.vit_kwargs, **skip_init})
    expected = {k: v.shape for k, v in model.state_dict().items()}
    grid = tuple(model.patch_embed.grid_size)
    dim = arch_dims(spec.arch)[0]
    enc, problems = dict(conv.encoder), []

    def fit(key: str, fn) -> None:
        try:
            enc[key] = fn(enc[key])
        except Exception:  # noqa: BLE001 - a tensor that cannot be resized is a mismatch, named below
            pass

    if "pos_embed" in enc and "pos_embed" in expected and enc["pos_embed"].ndim == 3 \
            and enc["pos_embed"].shape[-1] == dim \
            and square_side(enc["pos_embed"].shape[1] - conv.num_prefix_tokens):
        fit("pos_embed", lambda t: fit_pos_embed(t, grid, conv.num_prefix_tokens))
    for k in [k for k in enc if k.endswith(REL_TABLE) and k in expected]:
        if enc[k].ndim == 2 and enc[k].shape[1] == expected[k][1]:
            fit(k, lambda t, k=k: fit_rel_table(t, grid, expected[k]))
    for k, shape in expected.items():
        if k in enc and enc[k].shape != shape:
            problems.append(f"{k} {list(enc[k].shape)} (expected {list(shape)})")
    # ViTDet / SAM checkpoints carry decomposed relative position tables that a plain ViT has no
    # place for: kept apart, for `--neck vitdet` to start from (tasks/coco/vitdet.py load_rel_pos)
    rel_pos = {k: enc.pop(k) for k in [k for k in enc if _VITDET_REL.fullmatch(k)]}
    optional = tuple(OPTIONAL_PREFIXES) + (("norm.",) if any(k.startswith("fc_norm.") for k in enc) else ())
    missing = [k for k in expected if k not in enc and not k.startswith(optional)]
    unexpected = [k for k in enc if k not in expected and not k.startswith(OPTIONAL_PREFIXES)]
    for k in [k for k in enc if k.startswith(OPTIONAL_PREFIXES)]:
        if enc[k].shape[-1] != dim and not k.endswith("head.bias"):
            problems.append(f"{k} {list(enc[k].shape)} (expected width {dim})")
    if unexpected:
        problems.append("unexpected keys " + ", ".join(unexpected[:SHOW_PROBLEMS]))
    if missing:
        problems.append("missing keys " + ", ".join(missing[:SHOW_PROBLEMS]))
    dec = _check_decoder(conv, dim, grid, problems)
    if problems:
        inferred = infer(conv)
        hint = ""
        if inferred.get("arch") and (inferred["arch"], inferred.get("patch_size")) != (spec.arch, spec.patch_size):
            hint = f"; the weights look like {inferred['arch']} with patch {inferred.get('patch_size')}"
        raise MaebenchError(f"{path}: does not fit {spec.arch} (patch {spec.patch_size}, {spec.img_size} px, "
                            f"read as {conv.fmt}){hint}: " + "; ".join(problems[:SHOW_PROBLEMS]))
    if any(k.startswith("fc_norm.") for k in enc) and not any(k.startswith("norm.") for k in enc):
        conv.notes.append("fc_norm but no norm (trained with average pooling): token pooling gets a new norm")
    return replace(conv, encoder=enc, decoder=dec, rel_pos={**conv.rel_pos, **rel_pos})


def _check_decoder(conv: Converted, dim: int, grid: tuple[int, int], problems: list[str]) -> dict:
    dec = dict(conv.decoder)
    w = dec.get("decoder_embed.weight")
    if dec and (w is None or w.ndim != 2 or w.shape[1] != dim):
        problems.append(f"decoder_embed.weight {list(w.shape) if w is not None else 'absent'} "
                        f"(expected [*, {dim}])")
    pos = dec.get("decoder_pos_embed")
    if pos is not None:
        if pos.ndim == 3 and square_side(pos.shape[1] - 1):
            dec["decoder_pos_embed"] = fit_pos_embed(pos, grid, 1)
        else:
            problems.append(f"decoder_pos_embed {list(pos.shape)} (expected [1, 1 + grid cells, *])")
    return dec


def canonical_payload(conv: Converted, spec: Spec, meta: dict[str, Any]) -> dict[str, Any]:
    """What gets saved to $MAEBENCH_HOME/weights/NAME.pth (see the module docstring)."""
    payload: dict[str, Any] = {"model": conv.encoder}
    if conv.decoder:
        payload["decoder"] = conv.decoder
    if conv.rel_pos:
        payload["rel_pos"] = conv.rel_pos
    # the source's own maebench metadata (decoder heads, target, mask ratio...) is kept, under
    # what registration decided
    payload["maebench"] = {**conv.meta, **meta, "arch": spec.arch, "patch_size": spec.patch_size,
                           "img_size": spec.img_size, "in_chans": spec.in_chans, "model": conv.model,
                           "vit_kwargs": conv.vit_kwargs}
    return payload


__all__ = ["Spec", "read_checkpoint", "file_digest", "infer", "resolve_spec", "check_and_fit",
           "canonical_payload", "convert", "detect"]
