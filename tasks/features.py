"""Frozen-encoder features: the [cls] output after the final norm, as the paper's linear probe
and the k-NN protocol read it. Extraction is sharded over processes and gathered back in
dataset order, so every process ends up with the same full feature matrix."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from maebench import distributed as dist
from maebench.tasks.classification_eval import shard_loader


def cls_features(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] -> [N, D]: the pooled pre-logits of a ViT built with global_pool='token'."""
    return encoder.forward_head(encoder.forward_features(x), pre_logits=True)


@torch.no_grad()
def extract(encoder: nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device,
            num_workers: int = 0, gather: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, D] float32 on CPU, labels [N] int64) for every item of `dataset`, in order.

    Each process encodes its ShardSampler shard (indices r, r + W, ...); the shards are
    gathered and interleaved back, so the result does not depend on the number of processes.
    gather=False returns only this process's shard (for sharded evaluation)."""
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    for x, y in shard_loader(dataset, batch_size, num_workers, device):
        feats.append(cls_features(encoder, x.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(y).long())
    encoder.train(was_training)
    mine = (torch.cat(feats) if feats else torch.empty(0, 0), torch.cat(labels) if labels else torch.empty(0, dtype=torch.long))
    if not gather:
        return mine
    shards = dist.all_gather_objects(mine)
    if len(shards) == 1:
        return mine
    n, world = len(dataset), len(shards)
    dim = next(f.shape[1] for f, _ in shards if f.numel())
    out_f, out_y = torch.empty(n, dim), torch.empty(n, dtype=torch.long)
    for r, (f, y) in enumerate(shards):            # rank r holds indices r, r + W, r + 2W, ...
        if len(y):                                   # a rank past the end holds nothing
            out_f[r::world], out_y[r::world] = f, y
    return out_f, out_y
