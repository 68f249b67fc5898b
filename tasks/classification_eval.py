"""Top-1 / top-5 accuracy on the val split, distributed so that every image counts exactly once.

Each process scores its `ShardSampler` shard (indices r, r + W, r + 2W, ...: no padding, unlike
DistributedSampler) and the integer counts are summed over processes, so the result equals a
single-process evaluation of the same weights whatever the number of processes.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from maebench import distributed as dist


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
