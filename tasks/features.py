"""Frozen-encoder features: the [cls] output after the final norm, as the paper's linear probe
and the k-NN protocol read it, or (`token_features`) the [cls] token and the mean of the patch
tokens of each of the last few blocks, each after the final norm, from one forward pass (what
the linear-probe sweep chooses among). Extraction is sharded over processes and gathered back
in dataset order, so every process ends up with the same full feature matrix."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from maebench import distributed as dist
from maebench.classification import shard_loader


def cls_features(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] -> [N, D]: the pooled pre-logits of a ViT built with global_pool='token'; for a
    timm-family backbone loaded with global_pool='probe', its documented probe feature (DINOv2:
    [cls] + mean of patch tokens; SigLIP: attention pool; see backbones/timm_family.py)."""
    from maebench.backbones.timm_family import probe_features
    return probe_features(encoder, x)


def feature_dim(encoder: nn.Module) -> int:
    """Width of `cls_features(encoder, x)`."""
    from maebench.backbones.timm_family import probe_dim
    return probe_dim(encoder)


POOLINGS = ("cls", "avg")        # the [cls] token; the mean of the patch tokens


def probe_is_cls(encoder: nn.Module) -> bool:
    """True when `cls_features` is the final-norm [cls] token (a ViT with global_pool='token' and
    no documented probe feature of its own), so pooling 'probe' equals pooling 'cls' of 1 block."""
    return (getattr(encoder, "probe_feature", None) is None and getattr(encoder, "global_pool", None) == "token"
            and getattr(encoder, "cls_token", None) is not None)


def token_features(encoder: nn.Module, x: torch.Tensor, blocks: int,
                   pooling: tuple[str, ...] = POOLINGS) -> torch.Tensor:
    """[N, 3, H, W] -> [N, len(pooling), blocks, D]: for each of the last `blocks` blocks (oldest
    first, so [..., -1, :] is the last block), its output after the encoder's final norm, pooled
    as the [cls] token or as the mean of the patch tokens (timm's forward_intermediates with
    norm=True, as DINOv2's linear evaluation reads its last blocks). [cls] of the last block is
    exactly what `cls_features` returns for a global_pool='token' ViT. Pooling 'probe' among
    others: the backbone's own probe pool (backbones/timm_family.py: EVA-02's fc_norm of the
    mean, SigLIP's attention pool) applied to each block's normed tokens."""
    from maebench.errors import UsageError
    if tuple(pooling) == ("probe",):                # the backbone's own probe feature, last block
        if blocks != 1:
            raise UsageError(f"pooling probe is the backbone's own feature of its last block: blocks must be 1, got {blocks}")
        return cls_features(encoder, x)[:, None, None, :]
    depth = len(encoder.blocks)
    if not 1 <= blocks <= depth:
        raise UsageError(f"feature blocks must lie in 1..{depth} (the encoder's depth), got {blocks}")
    out = encoder.forward_intermediates(x, indices=blocks, norm=True, output_fmt="NLC",
                                        intermediates_only=True, return_prefix_tokens=True)
    per_pool = []
    for pool in pooling:
        if pool == "cls":
            if not (isinstance(out[0], tuple) and getattr(encoder, "cls_token", None) is not None):
                raise UsageError("this backbone has no [cls] token: use pooling avg "
                                 "(--set feature_pooling=avg, or --search-space feature_pooling=avg)")
            per_pool.append(torch.stack([prefix[:, 0] for _, prefix in out], dim=1))
        elif pool == "avg":
            per_pool.append(torch.stack([(o[0] if isinstance(o, tuple) else o).mean(dim=1) for o in out], dim=1))
        elif pool == "probe":                       # the family's own pool of each block's normed tokens
            from maebench.backbones.timm_family import probe_from_tokens
            if getattr(encoder, "probe_feature", None) == "cls+avg":
                raise UsageError("the cls+avg probe feature is the [cls] and avg columns together: "
                                 "ask for pooling cls and avg")
            per_pool.append(torch.stack([probe_from_tokens(encoder, torch.cat([o[1], o[0]], dim=1)
                                                           if isinstance(o, tuple) else o) for o in out], dim=1))
        else:
            from maebench.errors import unknown
            raise unknown("feature pooling", pool, POOLINGS)
    return torch.stack(per_pool, dim=1)


@torch.no_grad()
def extract(encoder: nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device,
            num_workers: int = 0, gather: bool = True,
            fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] = cls_features) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, D] float32 on CPU, labels [N] int64) for every item of `dataset`, in order
    (`fn(encoder, x)` gives the features of a batch: [N, ...] when it is not `cls_features`).

    Each process encodes its ShardSampler shard (indices r, r + W, ...); the shards are
    gathered and interleaved back, so the result does not depend on the number of processes.
    gather=False returns only this process's shard (for sharded evaluation)."""
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    for x, y in shard_loader(dataset, batch_size, num_workers, device):
        feats.append(fn(encoder, x.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(y).long())
    encoder.train(was_training)
    mine = (torch.cat(feats) if feats else torch.empty(0, 0), torch.cat(labels) if labels else torch.empty(0, dtype=torch.long))
    if not gather:
        return mine
    shards = dist.all_gather_objects(mine)
    if len(shards) == 1:
        return mine
    n, world = len(dataset), len(shards)
    shape = next(f.shape[1:] for f, _ in shards if f.numel())
    out_f, out_y = torch.empty(n, *shape), torch.empty(n, dtype=torch.long)
    for r, (f, y) in enumerate(shards):            # rank r holds indices r, r + W, r + 2W, ...
        if len(y):                                   # a rank past the end holds nothing
            out_f[r::world], out_y[r::world] = f, y
    return out_f, out_y
