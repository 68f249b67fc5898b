"""End-to-end fine-tuning (MAE paper Table 9): the whole ViT trains with layer-wise lr decay,
drop path, RandAugment, random erasing, mixup / cutmix with a soft-target loss, label
smoothing, warm-up + cosine and optional EMA; the classifier reads the mean of the patch tokens
through fc_norm (or the [cls] token). `train_classifier` is also the loop of partial
fine-tuning, which only freezes parameters first."""
from __future__ import annotations

import argparse
from typing import Callable

import torch
import torch.nn as nn

from maebench import distributed as dist
from maebench import engine, optim, runs
from maebench.classification import classification_loss, evaluate, uses_mixup
from maebench.tasks.classification_data import eval_transform, finetune_train_transform
from maebench.tasks.classification_setup import Setup, check_batch, prepare

HEAD_INIT_STD = 2e-5    # the released recipe's head init: near-zero logits, so the first
                        # steps neither destroy the pretrained features nor saturate softmax


def build_classifier(backbone: str, cfg: dict, num_classes: int, seed: int) -> nn.Module:
    """The backbone with a fresh linear head; random parts (head, fc_norm, scratch weights)
    are drawn from `seed`, so a run is a function of its seed."""
    from maebench.backbones import registry
    torch.manual_seed(seed)
    model, _ = registry.load(backbone, img_size=cfg["img_size"], num_classes=num_classes,
                             global_pool=cfg["global_pool"], drop_path_rate=cfg["drop_path"])
    nn.init.trunc_normal_(model.head.weight, std=HEAD_INIT_STD)
    nn.init.zeros_(model.head.bias)
    return model


def layer_decay_groups(model: nn.Module, cfg: dict) -> list[dict]:
    """Optimizer groups of the trainable parameters: block i of L trains at
    lr x layer_decay ** (L - i), embeddings at layer_decay ** (L + 1), head and norms at lr."""
    return optim.param_groups(model, weight_decay=cfg["weight_decay"], layer_decay=cfg["layer_decay"],
                              num_layers=len(model.blocks))


def forward_flops(model: nn.Module, img_size: int) -> int:
    from maebench.flops import count_flops
    was = model.training
    model.eval()
    with torch.no_grad():
        n = count_flops(lambda: model(torch.zeros(1, 3, img_size, img_size)))
    model.train(was)
    return n


def train_classifier(args: argparse.Namespace, task: str, s: Setup, model: nn.Module, *,
                     flops_per_image: float | None = None, log: Callable[[str], None] = print) -> dict:
    """Train `model`'s parameters that require grad with the fine-tuning recipe in s.cfg,
    evaluate on the val split and store the row. Returns the final metrics."""
    cfg, data, device = s.cfg, s.data, s.device
    train_set = data.train_set(finetune_train_transform(cfg, s.entry.mean, s.entry.std))
    val_set = data.val_set(eval_transform(cfg, s.entry.mean, s.entry.std))
    groups = layer_decay_groups(model, cfg)
    peak_lr = engine.TrainConfig.from_cfg(cfg).peak_lr()
    if dist.is_main():
        trainable = sum(p.numel() for g in groups for p in g["params"])
        total = sum(p.numel() for p in model.parameters())
        log(f"{task}: {args.backbone} on {data.name} ({len(train_set)} labelled / {data.n_train_total} train, "
            f"{data.n_val} val, {data.num_classes} classes); training {trainable:,} of {total:,} parameters")
        log(optim.describe_groups(groups, peak_lr))       # layer decay, checkable at a glance
    loss_fn = classification_loss(cfg, data.num_classes)
    flops = flops_per_image if flops_per_image is not None else forward_flops(model, cfg["img_size"])

    def evaluate_fn(m: nn.Module) -> dict:
        return evaluate(m, val_set, batch_size=cfg["eval_batch_size"], device=device,
                        num_workers=cfg["num_workers"])

    with runs.tracked_run(seed=args.seed, out=args.out, results=args.results, resume=args.resume, force=args.force, task=task, backbone=args.backbone, dataset=data.name, config=cfg,
                          checkpoint_sha256=s.entry.sha256,
                          backbone_info=runs.backbone_info(s.entry)) as run:
        result = engine.fit(model, train_set, loss_fn, cfg, out_dir=run.out_dir, device=device,
                            seed=getattr(args, "seed", 0) or 0, param_groups=groups, evaluate=evaluate_fn,
                            resume=getattr(args, "resume", False), flops_per_image=flops, desc=task, log=log)
        run.finish(result.metrics, peak_mem_mb=result.peak_mem_mb, images_per_s=result.images_per_s)
    if dist.is_main():
        m = result.metrics
        log(f"{task}: top1 {m['top1']:.2f}  top5 {m['top5']:.2f}  ({m['val_images']} val images; run {run.run_id})")
    return result.metrics


def run(args: argparse.Namespace) -> int:
    s = prepare(args, "finetune")
    check_batch(s.cfg, len(s.data.train_indices), even=uses_mixup(s.cfg))
    model = build_classifier(args.backbone, s.cfg, s.data.num_classes, getattr(args, "seed", 0) or 0)
    train_classifier(args, "finetune", s, model)
    return 0
