"""Partial fine-tuning (MAE paper Sec. 4.3, Fig. 9): freeze the ViT except its last K blocks,
the final norm and the head, then train with the fine-tuning recipe.

K = 0.5 is the paper's "MLP sub-block of the last block": in a pre-norm block
x = x + attn(norm1(x)); x = x + mlp(norm2(x)), the MLP sub-block is the second residual branch,
so we tune norm2 and mlp (and the layer-scale ls2 / gamma_2 where a model has one) and keep the
attention branch (norm1, attn) frozen. `--blocks 0,0.5,1,2,4` runs one training per K and
stores one result row per K (config key `blocks`), the points of the Fig. 9 curve.

K = 0 is the paper's linear probe (Fig. 9's 73.5 for ViT-L is Table 1's linear number), not
the head trained with the fine-tuning recipe: it runs `maebench run --task linprobe` (its
protocol, maebench/protocols/linprobe.yaml; --epochs, --batch-size and the --set keys linprobe
knows carry over) and then stores a partial row with blocks 0 that carries that run's metrics
and id (config keys `protocol: linprobe`, `linprobe_run_id`), so the curve reads one table.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

import torch.nn as nn

from maebench.classification import uses_mixup
from maebench.errors import AlreadyDone, UsageError
from maebench.tasks.classification_setup import check_batch, load_config, prepare
from maebench.tasks.finetune import build_classifier, forward_flops, train_classifier

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
    if any(cfg["blocks"] == 0 for cfg in cfgs):
        linear_probe(args, s.data.name, subdir=len(cfgs) > 1)
    cfgs = [cfg for cfg in cfgs if cfg["blocks"] != 0]
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


def linear_probe(args: argparse.Namespace, dataset: str, *, subdir: bool) -> None:
    """K = 0: the linear-probe protocol through its own run path, then a partial row with its
    metrics (rank 0 only; the probe's own row stays under task linprobe)."""
    from maebench import config, distributed
    from maebench.results import ResultsStore
    from maebench.tasks import linprobe

    probe = copy.copy(args)
    known = config._flatten(config.protocol_defaults("linprobe"))
    probe.task, probe.blocks, probe.config = "linprobe", None, None
    probe.set = [item for item in (getattr(args, "set", None) or []) if config.parse_set(item)[0] in known]
    if subdir and getattr(args, "out", None):
        probe.out = str(Path(args.out) / "blocks-0")
    print("partial: blocks 0 is the paper's linear probe (Fig. 9): running the linprobe protocol")
    try:
        linprobe.run(probe)
    except AlreadyDone as done:
        if str(done):
            print(done)
    if not distributed.is_main():
        return
    store, seed = ResultsStore(getattr(args, "results", None)), getattr(args, "seed", 0) or 0
    labels = {"labels_per_class": getattr(args, "labels_per_class", None),
              "label_fraction": getattr(args, "label_fraction", None)}
    done = [r for r in store.rows(task="linprobe", backbone=args.backbone)
            if (r.seed or 0) == seed and r.dataset == dataset and all(r.config.get(k) == v for k, v in labels.items())]
    row = done[-1]                                         # the newest: the one just run (or found done)
    cfg = {k: v for k, v in row.config.items() if not k.startswith("backbone_")}
    cfg.update(blocks=0, protocol="linprobe", linprobe_run_id=row.run_id)
    info = {k[len("backbone_"):]: v for k, v in row.config.items() if k.startswith("backbone_")}
    with store.run(task="partial", backbone=args.backbone, config=cfg, dataset=row.dataset, split=row.split,
                   seed=row.seed, checkpoint_sha256=row.checkpoint_sha256, out_dir=row.out_dir,
                   run_id=f"partial-k0-{row.run_id}", backbone_info=info) as handle:
        handle.finish(row.metrics, peak_mem_mb=row.peak_mem_mb, images_per_s=row.images_per_s)
    print(f"partial blocks 0: top1 {row.metrics.get('top1', float('nan')):.2f} (linear probe run {row.run_id})")
