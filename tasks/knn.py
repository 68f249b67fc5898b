"""Weighted k-NN on frozen features (InstDisc's protocol, as DINO runs it): for each val image,
the k training images of highest cosine similarity vote for their class with weight
exp(similarity / T). No parameters are trained, so it reads the features as they are.

Every process holds the whole labelled training bank and scores its own ShardSampler shard
of the val split; the correct counts are summed over processes.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from maebench import distributed as dist
from maebench import runs
from maebench.errors import UsageError
from maebench.flops import peak_memory_mb
from maebench.tasks import features
from maebench.tasks.classification_data import eval_transform
from maebench.tasks.classification_eval import accuracy_from_counts, topk_correct
from maebench.tasks.classification_setup import prepare


def knn_scores(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, num_classes: int, *,
               k: int = 20, temperature: float = 0.07, chunk: int = 1024,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """[Q, classes] vote totals (on CPU). bank [N, D] and queries [Q, D] are L2-normalised here,
    so a dot product is the cosine similarity; k is capped at N. Computed on `device`, `chunk`
    queries at a time (a [chunk, N] similarity block)."""
    bank = F.normalize(bank.float().to(device), dim=1)
    queries = F.normalize(queries.float().to(device), dim=1)
    bank_labels = bank_labels.to(device)
    k = min(k, bank.shape[0])
    out = torch.zeros(queries.shape[0], num_classes)
    for start in range(0, queries.shape[0], chunk):
        sim = queries[start:start + chunk] @ bank.T               # [q, N]
        top_sim, top_idx = sim.topk(k, dim=1)                     # [q, k]
        weights = (top_sim / temperature).exp()                   # [q, k]
        votes = torch.zeros(sim.shape[0], num_classes, device=device)
        votes.scatter_add_(1, bank_labels[top_idx], weights)      # sum of weights per class
        out[start:start + chunk] = votes.cpu()
    return out


def run(args: argparse.Namespace) -> int:
    if getattr(args, "epochs", None) is not None:
        raise UsageError("--task knn trains nothing: --epochs does not apply")
    s = prepare(args, "knn")
    cfg, data, device = s.cfg, s.data, s.device
    if not (isinstance(cfg["k"], int) and cfg["k"] >= 1):
        raise UsageError(f"config key 'k' must be a whole number >= 1, got {cfg['k']!r}")
    if not cfg["temperature"] > 0:
        raise UsageError(f"config key 'temperature' must be > 0, got {cfg['temperature']}")
    if not (isinstance(cfg["query_chunk"], int) and cfg["query_chunk"] >= 1):
        raise UsageError(f"config key 'query_chunk' must be a whole number >= 1, got {cfg['query_chunk']!r}")
    from maebench.tasks.linprobe import load_encoder
    encoder = load_encoder(args.backbone, cfg["img_size"], getattr(args, "seed", 0) or 0).to(device)
    tf = eval_transform(cfg, s.entry.mean, s.entry.std)
    kw = dict(batch_size=cfg["batch_size"], device=device, num_workers=cfg["num_workers"])
    if dist.is_main():
        print(f"knn: {args.backbone} on {data.name} ({len(data.train_indices)} labelled / {data.n_train_total} "
              f"train, {data.n_val} val, {data.num_classes} classes), k={cfg['k']}, T={cfg['temperature']}")
    with runs.tracked_run(seed=args.seed, out=args.out, results=args.results, task="knn", backbone=args.backbone, dataset=data.name, config=cfg,
                          checkpoint_sha256=s.entry.sha256,
                          backbone_info=runs.backbone_info(s.entry)) as run:
        t0 = time.perf_counter()
        bank, bank_y = features.extract(encoder, data.train_set(tf), **kw)          # every process: all
        val_f, val_y = features.extract(encoder, data.val_set(tf), gather=False, **kw)  # this shard
        encoded = len(bank_y) + len(val_y) * dist.world_size()
        images_per_s = encoded / (time.perf_counter() - t0)
        scores = knn_scores(bank, bank_y, val_f, data.num_classes, k=cfg["k"],
                            temperature=cfg["temperature"], chunk=cfg["query_chunk"], device=device)
        counts = torch.cat([torch.tensor([len(val_y)]), topk_correct(scores, val_y)]).to(device)
        metrics = accuracy_from_counts(dist.all_reduce_sum(counts))
        run.finish(metrics, peak_mem_mb=peak_memory_mb(device), images_per_s=images_per_s)
    if dist.is_main():
        print(f"knn: top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f}  "
              f"({metrics['val_images']} val images; run {run.run_id})")
    return 0
