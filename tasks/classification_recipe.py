"""The one image-classification training recipe: the training transform (timm's pipeline with the
posterize fix), the mixup / cutmix / label-smoothing loss, and top-k evaluation
(tasks/classification_eval.py). Used by fine-tuning, partial fine-tuning and supervised
pretraining; each reads its own protocol keys and passes the values here."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


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
