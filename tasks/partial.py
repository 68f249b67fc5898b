"""Partial fine-tuning (MAE paper Sec. 4.3, Fig. 9): freeze the ViT except its last K blocks,
the final norm and the head, then train with the fine-tuning recipe.

K = 0.5 is the paper's "MLP sub-block of the last block": in a pre-norm block
x = x + attn(norm1(x)); x = x + mlp(norm2(x)), the MLP sub-block is the second residual branch,
so we tune norm2 and mlp (and the layer-scale ls2 / gamma_2 where a model has one) and keep the
attention branch (norm1, attn) frozen. `--blocks 0,0.5,1,2,4` runs one training per K and
stores one result row per K (config key `blocks`), the points of the Fig. 9 curve.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

import torch.nn as nn

from maebench.errors import AlreadyDone, UsageError
from maebench.tasks.classification_setup import check_batch, load_config, prepare
from maebench.tasks.finetune import build_classifier, forward_flops, train_classifier, uses_mixup

HALF = 0.5
MLP_SUB_BLOCK = ("norm2.", "mlp.", "ls2.", "gamma_2")   # timm Block / BEiT Block names
HEAD_PARTS = ("head.", "fc_norm.", "norm.")              # after the blocks: always tuned


def parse_blocks(text: str | None) -> list[int | float | None]:
    """'0,0.5,1,2,4' -> [0, 0.5, 1, 2, 4]; None -> [None] (the protocol's default)."""
    if text is None:
        return [None]
    out: list[int | float | None] = []
    for part in str(text).split(","):
        try:
            k = float(part)
        except ValueError:
            raise UsageError(f"--blocks expects numbers such as 0,0.5,1,2,4; got '{text}'") from None
        k = int(k) if k.is_integer() else k
        if k not in out:
            out.append(k)
    return out


def check_blocks(k, depth: int) -> None:
    ok = not isinstance(k, bool) and isinstance(k, (int, float)) and (
        k == HALF or (float(k).is_integer() and 0 <= k <= depth))
    if not ok:
        raise UsageError(f"blocks must be 0.5 or a whole number from 0 to the backbone's depth ({depth}), got {k!r}")


def tuned(name: str, k: float, depth: int) -> bool:
    """Does parameter `name` train when the last `k` blocks are tuned?"""
    if name.startswith(HEAD_PARTS):
        return True
    if not name.startswith("blocks."):
        return False                                       # patch/pos embedding, cls token
    index, rest = name.split(".", 2)[1:]
    if k == HALF:
        return int(index) == depth - 1 and rest.startswith(MLP_SUB_BLOCK)
    return int(index) >= depth - int(k)


def freeze(model: nn.Module, k: float) -> list[str]:
    """Set requires_grad per `tuned`; returns the names left trainable."""
    depth = len(model.blocks)
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(tuned(name, k, depth))
        if p.requires_grad:
            names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    ks = parse_blocks(getattr(args, "blocks", None))
    s = prepare(args, "partial", extra={"blocks": ks[0]})
    cfgs = [s.cfg] + [load_config("partial", args, s.entry.arch, s.entry.img_size, {"blocks": k}) for k in ks[1:]]
    depth = s.entry.depth                                  # timm families: stored at registration
    for cfg in cfgs:                                       # every K checked before the first row
        check_blocks(cfg["blocks"], depth)
    for cfg in cfgs:
        check_batch(cfg, len(s.data.train_indices), even=uses_mixup(cfg))
    seed = getattr(args, "seed", 0) or 0
    for cfg in cfgs:
        k = cfg["blocks"]
        model = build_classifier(args.backbone, cfg, s.data.num_classes, seed)
        freeze(model, k)
        # The engine counts 3 x forward FLOPs per image (forward + backward); frozen blocks only
        # run forward. Blocks dominate a ViT's FLOPs, so the tuned share is about K / depth
        # (the MLP is about 2/3 of a block's FLOPs).
        total = forward_flops(model, cfg["img_size"])
        share = (2 / 3 if k == HALF else k) / depth
        flops = total * (1 - share) / 3 + total * share
        run_args = args
        if len(cfgs) > 1 and getattr(args, "out", None):  # one directory per K of a sweep
            run_args = copy.copy(args)
            run_args.out = str(Path(args.out) / f"blocks-{k:g}")
        try:
            train_classifier(run_args, "partial", dataclasses.replace(s, cfg=cfg), model, flops_per_image=flops)
        except AlreadyDone as done:                        # a sweep goes on past its finished points
            if str(done):
                print(done)
    return 0
