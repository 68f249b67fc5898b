"""The one image-classification recipe, shared by fine-tuning, partial fine-tuning (tasks/) and
supervised pretraining (backbones/pretraining/supervised_method.py), hence in the ground: the training
transform (timm's pipeline with the posterize fix), the mixup / cutmix / label-smoothing loss,
and top-k evaluation on the val split, distributed so that every image counts exactly once.

Evaluation: each process scores its `ShardSampler` shard (indices r, r + W, r + 2W, ...: no
padding, unlike DistributedSampler) and the integer counts are summed over processes, so the
result equals a single-process evaluation of the same weights whatever the number of processes.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from maebench import distributed as dist


# ---- training: transform and loss --------------------------------------------------------------
def train_transform(img_size: int, mean: Sequence[float], std: Sequence[float], *, scale: Sequence[float],
                    rand_augment: str | None, reprob: float, hflip: float = 0.5,
                    color_jitter: float | None = None, remode: str = "pixel"):
    """Random-resized crop (bicubic), flip, RandAugment (colour jitter only without it, timm's
    rule), normalise, random erasing: timm's `create_transform`, as the released MAE and DeiT
    recipes build it."""
    from timm.data import create_transform
    tf = create_transform(img_size, is_training=True, scale=tuple(scale), hflip=hflip,
                          color_jitter=color_jitter, auto_augment=rand_augment or None,
                          interpolation="bicubic", re_prob=reprob, re_mode=remode, re_count=1,
                          mean=tuple(mean), std=tuple(std))
    _fix_posterize(tf)
    return tf


def posterize_any_bits(img, bits_to_keep, **_):
    """Posterize that also takes 0 bits (a black image, as TF's RandAugment and Pillow < 10 did).

    RandAug(9, 0.5) in its 'inc1' form keeps 4 - 4 * m / 10 bits, i.e. 0 bits when the noisy
    magnitude reaches its cap of 10; current Pillow refuses bits = 0 and would crash a worker."""
    from PIL import Image, ImageOps
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, int(bits_to_keep))


def _fix_posterize(tf) -> None:
    from timm.data.auto_augment import RandAugment, posterize
    for t in getattr(tf, "transforms", []):
        if isinstance(t, RandAugment):
            for op in t.ops:
                if op.aug_fn is posterize:
                    op.aug_fn = posterize_any_bits


class ClassificationLoss:
    """loss_fn(model, batch, device) for engine.fit: mixup / cutmix on the device, then the
    matching criterion. With mixing the targets are soft and the label smoothing is folded into
    them (timm's Mixup), so the loss is a plain soft-target cross-entropy."""

    def __init__(self, num_classes: int, *, mixup: float, cutmix: float, mixup_prob: float,
                 switch_prob: float, label_smoothing: float):
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        self.mixup = None
        if (mixup > 0 or cutmix > 0) and mixup_prob > 0:
            self.mixup = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=mixup_prob, switch_prob=switch_prob,
                               mode="batch", label_smoothing=label_smoothing, num_classes=num_classes)
            self.criterion = SoftTargetCrossEntropy()
        elif label_smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing=label_smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

    def __call__(self, model: nn.Module, batch, device: torch.device):
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if self.mixup is not None:
            x, y = self.mixup(x, y)                       # y: [N, classes] soft targets
        return self.criterion(model(x), y), {}


def uses_mixup(cfg: dict) -> bool:
    """Whether a protocol's batches are mixed (mixup / cutmix on and mixup_prob > 0): then each
    process's micro-batch must be even, since the pairs come from within a batch."""
    aug = cfg["aug"]
    return (aug["mixup"] > 0 or aug["cutmix"] > 0) and aug["mixup_prob"] > 0


def classification_loss(cfg: dict, num_classes: int) -> ClassificationLoss:
    """The recipe's loss from a protocol's config. Fine-tuning protocols keep label_smoothing
    under aug:, pretrain_supervised at the top level (its Table 11 layout)."""
    aug = cfg["aug"]
    smoothing = aug["label_smoothing"] if "label_smoothing" in aug else cfg["label_smoothing"]
    return ClassificationLoss(num_classes, mixup=aug["mixup"], cutmix=aug["cutmix"], mixup_prob=aug["mixup_prob"],
                              switch_prob=aug["mixup_switch_prob"], label_smoothing=smoothing)


# ---- evaluation: top-k on the val split ----------------------------------------------------------
def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """[len(ks)] int64: how many rows have their target among the k highest scores, for each k.
    k is capped at the number of classes (top-5 of a 3-class problem is top-3, i.e. 100%)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices                   # [N, kmax]
    hit = top.eq(targets.view(-1, 1))                         # [N, kmax]
    return torch.stack([hit[:, :min(k, kmax)].any(dim=1).sum() for k in ks]).long()


def accuracy_from_counts(counts: torch.Tensor) -> dict[str, float]:
    """counts = [n, correct@1, correct@5] (already summed over processes) -> percentages."""
    n, c1, c5 = (int(v) for v in counts.tolist())
    if n == 0:
        return {"top1": 0.0, "top5": 0.0, "val_images": 0}
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "val_images": n}


def shard_loader(dataset: Dataset, batch_size: int, num_workers: int, device: torch.device,
                 sharded: bool = False) -> DataLoader:
    """This process's shard of `dataset`, in index order, nothing dropped or repeated
    (sharded=True: `dataset` already is this process's shard; read all of it)."""
    sampler = None if sharded else dist.ShardSampler(len(dataset))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, pin_memory=device.type == "cuda")


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device,
             num_workers: int = 0, sharded: bool = False, amp: bool = False,
             forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """{"top1", "top5", "val_images"} of `model` on `dataset` (items: (input, label)).
    Called on every process; sharded=True when `dataset` is already this process's shard.
    `forward(model, x)` defaults to `model(x)`; `amp` autocasts as the training loop does."""
    from maebench.amp import autocast
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.long, device=device)     # [n, correct@1, correct@5]
    for x, y in shard_loader(dataset, batch_size, num_workers, device, sharded):
        x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)
        with autocast(device, amp):
            logits = forward(model, x) if forward is not None else model(x)
        counts[0] += y.numel()
        counts[1:] += topk_correct(logits.float(), y)
    dist.all_reduce_sum(counts)
    model.train(was_training)
    return accuracy_from_counts(counts)
