"""End-to-end fine-tuning (MAE paper Table 9): the whole ViT trains with layer-wise lr decay,
drop path, RandAugment, random erasing, mixup / cutmix with a soft-target loss, label
smoothing, warm-up + cosine and optional EMA; the classifier reads the mean of the patch tokens
through fc_norm (or the [cls] token). `classifier_recipe` is also the recipe of partial
fine-tuning, which only freezes parameters first."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from maebench import distributed as dist
from maebench import engine, optim, runs
from maebench.classification import classification_loss, evaluate, uses_mixup
from maebench.runner import Recipe
from maebench.runspec import RunSpec
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


def classifier_recipe(spec: RunSpec, task: str, s: Setup, model: nn.Module, *,
                      flops_per_image: float | None = None, out: str | None = None,
                      log: Callable[[str], None] = print) -> Recipe:
    """Train `model`'s parameters that require grad with the fine-tuning recipe in s.cfg and
    evaluate on the val split."""
    cfg, data, device = s.cfg, s.data, s.device
    train_set = data.train_set(finetune_train_transform(cfg, s.entry.mean, s.entry.std))
    val_set = data.val_set(eval_transform(cfg, s.entry.mean, s.entry.std))
    groups = layer_decay_groups(model, cfg)
    peak_lr = engine.TrainConfig.from_cfg(cfg).peak_lr()
    if dist.is_main():
        trainable = sum(p.numel() for g in groups for p in g["params"])
        total = sum(p.numel() for p in model.parameters())
        log(f"{task}: {spec.backbone} on {data.name} ({len(train_set)} labelled / {data.n_train_total} train, "
            f"{data.n_val} val, {data.num_classes} classes); training {trainable:,} of {total:,} parameters")
        log(optim.describe_groups(groups, peak_lr))       # layer decay, checkable at a glance

    def evaluate_fn(m: nn.Module) -> dict:
        return evaluate(m, val_set, batch_size=cfg["eval_batch_size"], device=device,
                        num_workers=cfg["num_workers"])

    def report(m: dict, run) -> None:
        log(f"{task}: top1 {m['top1']:.2f}  top5 {m['top5']:.2f}  ({m['val_images']} val images; run {run.run_id})")

    return Recipe(task=task, backbone=spec.backbone, dataset=data.name, config=cfg, device=device,
                  backbone_info=runs.backbone_info(s.entry), checkpoint_sha256=s.entry.sha256, out=out,
                  desc=task, log=log, model=model, train_set=train_set,
                  loss_fn=classification_loss(cfg, data.num_classes), param_groups=groups,
                  evaluate=evaluate_fn, report=report,
                  flops_per_image=flops_per_image if flops_per_image is not None
                  else forward_flops(model, cfg["img_size"]))


def recipes(spec: RunSpec):
    s = prepare(spec)
    check_batch(s.cfg, len(s.data.train_indices), even=uses_mixup(s.cfg))
    model = build_classifier(spec.backbone, s.cfg, s.data.num_classes, spec.seed)
    yield classifier_recipe(spec, "finetune", s, model)
