"""Linear probing (MAE paper Table 10): a frozen encoder, and on its [cls] output a BatchNorm1d
without affine parameters followed by a linear layer, trained with LARS.

Two modes that compute the same thing when the training images get the fixed eval crop:
- direct: every step runs the frozen encoder on the batch (needed for the paper's
  random-resized-crop augmentation, which changes the features every epoch);
- cached (`--cached-features`): the encoder runs once per image, the features stay in memory and
  the probe trains on them, so an E-epoch probe costs one encoder pass instead of E.
Both modes seed the probe the same way and see the batches in the same order, so they give the
same probe up to float rounding (a test checks it).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from maebench import distributed as dist
from maebench import engine, optim, runs
from maebench.errors import UsageError
from maebench.tasks import features
from maebench.tasks.classification_data import eval_transform, probe_train_transform
from maebench.tasks.classification_eval import evaluate
from maebench.tasks.classification_setup import Setup, check_batch, prepare

HEAD_INIT_STD = 0.01     # the released recipe's probe init


class ProbeHead(nn.Module):
    """[N, D] features -> [N, classes]: BatchNorm1d(affine=False) whitens each feature with
    batch statistics (running averages at eval), then a linear layer. Without affine, the
    BatchNorm is a fixed affine map at test time, so the probe stays a linear classifier."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.linear.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(f))


class LinearProbe(nn.Module):
    """Frozen encoder + ProbeHead on images. The encoder's parameters never require grad and
    the encoder stays in eval mode even when the engine calls .train() every epoch."""

    def __init__(self, encoder: nn.Module, head: ProbeHead):
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()
        self.head = head

    def train(self, mode: bool = True) -> "LinearProbe":
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f = features.cls_features(self.encoder, x)      # [N, D]
        return self.head(f)


def lars_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer groups of the probe. LARS adapts the weight matrix (lr x 0.001 |w| / |grad|)
    even at weight decay 0, as the released recipe's LARS does; the bias (1-D) is plain
    momentum SGD. timm's Lars reads `always_adapt` per group."""
    groups = optim.param_groups(model, weight_decay=weight_decay)
    for g in groups:
        g["always_adapt"] = all(p.ndim > 1 for p in g["params"])
    return groups


def cross_entropy(model: nn.Module, batch, device: torch.device):
    x, y = batch
    return nn.functional.cross_entropy(model(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)), {}


def load_encoder(backbone: str, img_size: int, seed: int) -> nn.Module:
    from maebench.backbones import registry
    torch.manual_seed(seed)                                 # scratch backbones: a seeded init
    encoder, _ = registry.load(backbone, img_size=img_size, num_classes=0, global_pool="token")
    return encoder.requires_grad_(False).eval()


def make_head(dim: int, num_classes: int, seed: int) -> ProbeHead:
    torch.manual_seed(seed)                                 # the same probe in both modes
    return ProbeHead(dim, num_classes)


def run(args: argparse.Namespace) -> int:
    extra = {"cached_features": True, "augment": False} if getattr(args, "cached_features", False) else {}
    s = prepare(args, "linprobe", extra=extra)
    cfg = s.cfg
    if cfg["cached_features"] and cfg["augment"]:
        raise UsageError("cached features are computed once with the fixed eval crop: "
                         "they need augment false (drop --set augment=true or --cached-features)")
    check_batch(cfg, len(s.data.train_indices))
    seed = getattr(args, "seed", 0) or 0
    encoder = load_encoder(args.backbone, cfg["img_size"], seed)
    head = make_head(encoder.num_features, s.data.num_classes, seed)
    train = train_cached if cfg["cached_features"] else train_direct
    train(args, s, encoder, head)
    return 0


def _describe(args, s: Setup, groups: list[dict], mode: str) -> None:
    if dist.is_main():
        d = s.data
        print(f"linprobe ({mode}): {args.backbone} on {d.name} ({len(d.train_indices)} labelled / "
              f"{d.n_train_total} train, {d.n_val} val, {d.num_classes} classes)")
        print(optim.describe_groups(groups, engine.TrainConfig.from_cfg(s.cfg).peak_lr()))


def _finish(run, result, extra_metrics: dict | None = None) -> dict:
    metrics = {**result.metrics, **(extra_metrics or {})}
    run.finish(metrics, peak_mem_mb=result.peak_mem_mb, images_per_s=result.images_per_s)
    if dist.is_main():
        print(f"linprobe: top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f}  "
              f"({metrics['val_images']} val images; run {run.run_id})")
    return metrics


def train_direct(args, s: Setup, encoder: nn.Module, head: ProbeHead) -> dict:
    cfg, device = s.cfg, s.device
    model = LinearProbe(encoder, head)
    train_set = s.data.train_set(probe_train_transform(cfg, s.entry.mean, s.entry.std))
    val_set = s.data.val_set(eval_transform(cfg, s.entry.mean, s.entry.std))
    groups = lars_groups(model, cfg["weight_decay"])
    _describe(args, s, groups, "direct: the encoder runs on every batch")
    from maebench.tasks.finetune import forward_flops
    # engine counts 3 x forward per image; the frozen encoder only runs forward
    flops = forward_flops(model, cfg["img_size"]) / 3 + 2 * encoder.num_features * s.data.num_classes

    def evaluate_fn(m: nn.Module) -> dict:
        return evaluate(m, val_set, batch_size=cfg["eval_batch_size"], device=device, num_workers=cfg["num_workers"])

    with runs.tracked_run(seed=args.seed, out=args.out, results=args.results, task="linprobe", backbone=args.backbone, dataset=s.data.name, config=cfg,
                          checkpoint_sha256=s.entry.sha256,
                          backbone_info=runs.backbone_info(s.entry)) as run:
        result = engine.fit(model, train_set, cross_entropy, cfg, out_dir=run.out_dir, device=device,
                            seed=getattr(args, "seed", 0) or 0, param_groups=groups, evaluate=evaluate_fn,
                            resume=getattr(args, "resume", False), flops_per_image=flops, desc="linprobe")
        return _finish(run, result)


def train_cached(args, s: Setup, encoder: nn.Module, head: ProbeHead) -> dict:
    cfg, device = s.cfg, s.device
    tf = eval_transform(cfg, s.entry.mean, s.entry.std)
    groups = lars_groups(head, cfg["weight_decay"])
    _describe(args, s, groups, "cached features: the encoder runs once per image")
    with runs.tracked_run(seed=args.seed, out=args.out, results=args.results, task="linprobe", backbone=args.backbone, dataset=s.data.name, config=cfg,
                          checkpoint_sha256=s.entry.sha256,
                          backbone_info=runs.backbone_info(s.entry)) as run:
        t0 = time.perf_counter()
        encoder.to(device)
        kw = dict(batch_size=cfg["eval_batch_size"], device=device, num_workers=cfg["num_workers"])
        train_f, train_y = features.extract(encoder, s.data.train_set(tf), **kw)     # [N, D], [N]
        val_f, val_y = features.extract(encoder, s.data.val_set(tf), gather=False, **kw)  # this shard
        encoder.cpu()
        extract_s = time.perf_counter() - t0
        if dist.is_main():
            print(f"linprobe: encoded {len(train_y)} train + {s.data.n_val} val images in {extract_s:.1f} s")
        val_set = TensorDataset(val_f, val_y)

        def evaluate_fn(m: nn.Module) -> dict:
            return evaluate(m, val_set, batch_size=cfg["eval_batch_size"], device=device, sharded=True)

        # features are in memory: loader workers would only add copies
        result = engine.fit(head, TensorDataset(train_f, train_y), cross_entropy, {**cfg, "num_workers": 0},
                            out_dir=run.out_dir, device=device, seed=getattr(args, "seed", 0) or 0,
                            param_groups=groups, evaluate=evaluate_fn, resume=getattr(args, "resume", False),
                            flops_per_image=2 * encoder.num_features * s.data.num_classes, desc="linprobe")
        return _finish(run, result, {"feature_extraction_s": round(extract_s, 3)})
