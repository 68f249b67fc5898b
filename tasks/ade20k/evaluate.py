"""Semantic-segmentation evaluation: whole-image and sliding-window inference, and mIoU / mAcc /
aAcc from ONE confusion matrix accumulated over the split.

Summing per-pixel counts over the whole split (rather than averaging per-image scores) is what
mmseg and every ADE20K number in the MAE paper report; under torchrun each process fills the
matrix for its shard (`ShardSampler`: every image exactly once) and the matrices are summed.

Metric definitions (mmseg): for class c, IoU = TP / (TP + FP + FN) and Acc = TP / (TP + FN);
aAcc = all TP / all labelled pixels. A class with no pixel in the ground truth nor in the
prediction has an undefined IoU (0/0) and is left out of the mean (NaN-mean); a class predicted
but never present counts with IoU 0; mAcc averages over the classes present in the ground
truth. Pixels labelled ignore_index count nowhere. All numbers are percentages.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn.functional as F

Predict = Callable[[torch.Tensor], torch.Tensor]   # images [B, 3, h, w] -> logits [B, K, h, w]


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """int64 [K, K], rows = ground-truth class, columns = predicted class; ignored pixels dropped."""
    keep = label != ignore_index
    idx = label[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def segmentation_metrics(cm: torch.Tensor) -> dict:
    """mIoU, mAcc, aAcc (percent) and per_class_iou (percent; None where undefined) from [K, K] counts."""
    cm = cm.double().cpu()
    tp = cm.diag()
    gt = cm.sum(dim=1)                    # labelled pixels per class
    pred = cm.sum(dim=0)                  # predicted pixels per class
    union = gt + pred - tp
    iou = tp / union                      # NaN where the class is absent from both
    acc = tp / gt                         # NaN where the class is absent from the ground truth

    def nanmean(x):
        v = x[~torch.isnan(x)]
        return 100 * float(v.mean()) if len(v) else float("nan")

    total = float(gt.sum())
    return {"mIoU": nanmean(iou), "mAcc": nanmean(acc),
            "aAcc": 100 * float(tp.sum()) / total if total else float("nan"),
            "per_class_iou": [None if math.isnan(v) else 100 * v for v in iou.tolist()]}


def whole_inference(predict: Predict, images: torch.Tensor) -> torch.Tensor:
    return predict(images)


def slide_inference(predict: Predict, images: torch.Tensor, num_classes: int, crop: int,
                    stride: int) -> torch.Tensor:
    """Logits [B, K, H, W] averaged over crop x crop windows placed every `stride` pixels, the last
    row / column of windows flush with the border (mmseg slide_inference). Sides shorter than the
    crop get one window spanning them."""
    b, _, h, w = images.shape
    rows = max(h - crop + stride - 1, 0) // stride + 1
    cols = max(w - crop + stride - 1, 0) // stride + 1
    logits = images.new_zeros((b, num_classes, h, w), dtype=torch.float32)
    count = images.new_zeros((1, 1, h, w), dtype=torch.float32)
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * stride + crop, h), min(c * stride + crop, w)
            y0, x0 = max(y1 - crop, 0), max(x1 - crop, 0)
            logits[:, :, y0:y1, x0:x1] += predict(images[:, :, y0:y1, x0:x1]).float()
            count[:, :, y0:y1, x0:x1] += 1
    return logits / count


def infer(predict: Predict, images: torch.Tensor, *, num_classes: int, mode: str, crop: int,
          stride: int) -> torch.Tensor:
    if mode == "whole":
        return whole_inference(predict, images)
    if mode == "slide":
        return slide_inference(predict, images, num_classes, crop, stride)
    from maebench.errors import unknown
    raise unknown("inference mode", mode, ("whole", "slide"))


def _single(batch):
    return batch[0]


@torch.no_grad()
def evaluate(model, dataset, *, num_classes: int, ignore_index: int, device: torch.device,
             mode: str = "slide", crop: int = 512, stride: int = 341, num_workers: int = 0,
             amp: bool = True) -> dict:
    """Metrics of `model` (with .predict) on `dataset` of (image [3, h, w], label [H, W]) pairs.

    Images come one at a time (their sizes differ); logits are resized to the label's original
    size before the argmax, so scores are at the dataset's own resolution."""
    from torch.utils.data import DataLoader

    from maebench import distributed as dist

    was_training = model.training
    model.eval()
    if dist.is_dist():
        # Without SyncBatchNorm (CPU) each process's BatchNorm statistics drift apart between DDP's
        # per-step buffer broadcasts; score every shard with rank 0's, the ones the checkpoint keeps.
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)
    loader = DataLoader(dataset, batch_size=1, sampler=dist.ShardSampler(len(dataset)),
                        num_workers=num_workers, collate_fn=_single)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    autocast = contextlib.nullcontext()
    if amp and device.type == "cuda":   # as in training; never on CPU (no fast bf16 there)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    for image, label in loader:
        image, label = image.to(device).unsqueeze(0), label.to(device)
        with autocast:
            logits = infer(model.predict, image, num_classes=num_classes, mode=mode, crop=crop, stride=stride)
        if logits.shape[-2:] != label.shape:
            logits = F.interpolate(logits.float(), size=label.shape, mode="bilinear", align_corners=False)
        cm += confusion_matrix(logits.argmax(dim=1)[0], label, num_classes, ignore_index)
    dist.all_reduce_sum(cm)
    model.train(was_training)
    return segmentation_metrics(cm)
