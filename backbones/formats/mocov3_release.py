"""MoCo v3 (facebookresearch/moco-v3) ViT checkpoints: vit-b-300ep.pth.tar and the like.

{"epoch", "arch", "state_dict", "optimizer", "scaler"}; state_dict keys are
`module.base_encoder.<timm ViT key>`, plus a `module.momentum_encoder.` twin, the projection MLP
at `module.base_encoder.head.*` (3 Linear + BatchNorm layers) and `module.predictor.*`. Only the
base encoder without its head is a backbone (the release's own convert_to_deit.py keeps the same).
"""
from __future__ import annotations

from typing import Any

from maebench.backbones.formats.canonical import Converted, strip_prefixes, unwrap
from maebench.errors import MaebenchError


def is_mocov3(state: dict) -> bool:
    return any(k.startswith(("module.base_encoder.", "base_encoder.")) for k in state)


def convert_mocov3(top: Any, path) -> Converted:
    state = unwrap(top, path)
    if not is_mocov3(state):
        raise MaebenchError(f"{path}: no 'module.base_encoder.' keys: not a MoCo v3 checkpoint")
    enc, other = {}, {}
    counts = {"momentum encoder": 0, "projection head": 0, "predictor": 0}
    for k, v in state.items():
        kk = k[len("module."):] if k.startswith("module.") else k
        if kk.startswith("base_encoder.head."):
            counts["projection head"] += 1
        elif kk.startswith("base_encoder."):
            enc[kk[len("base_encoder."):]] = v
        elif kk.startswith("momentum_encoder."):
            counts["momentum encoder"] += 1
        elif kk.startswith("predictor."):
            counts["predictor"] += 1
        else:
            other[k] = v  # unknown: left in, so that the shape check names it
    enc = strip_prefixes({**enc, **other})
    dropped = ", ".join(f"{what} ({n} tensors)" for what, n in counts.items() if n)
    notes = [f"kept the MoCo v3 base encoder; dropped {dropped}: pretraining-only parts (fine)"] if dropped else []
    return Converted("mocov3", enc, notes=notes)
