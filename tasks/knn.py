"""Weighted k-NN on frozen features (InstDisc's protocol, as DINO runs it): for each val image,
the k training images of highest cosine similarity vote for their class with weight
exp(similarity / T). No parameters are trained, so it reads the features as they are.

Every process holds the whole labelled training bank and scores its own shard of the val
split; the correct counts are summed over processes. One neighbour search (the largest k)
serves every k x T of the config's grid (grid_k x grid_temperatures), each reported in the
row's metrics["grid"]; the protocol's k = 20, T = 0.07 stays the headline top1/top5. Features
come from the feature cache shared with the linear probe (tasks/feature_cache.py).

--search (maebench/search.py): k and T are chosen first on a held-out part of the labelled
training images (stratified by class; the rest is the bank, the held-out images the queries;
one neighbour search scores the whole space); the headline top1/top5 are then the chosen k and T
with the whole bank on the reported split, and metrics["search"] records every point.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from maebench import distributed as dist
from maebench import runs
from maebench.errors import UsageError
from maebench.flops import peak_memory_mb
from maebench.runner import Outcome, Recipe
from maebench.runspec import RunSpec
from maebench.tasks import frozen_data
from maebench.classification import accuracy_from_counts, topk_correct
from maebench.tasks.classification_setup import prepare


def knn_grid_counts(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                    query_labels: torch.Tensor, num_classes: int, pairs: list[tuple[int, float]], *,
                    chunk: int = 1024, device: torch.device | str = "cpu") -> dict[tuple[int, float], torch.Tensor]:
    """{(k, T): [n, correct@1, correct@5]} for every pair, from one top-max(k) search per query
    chunk. bank [N, D] and queries [Q, D] are L2-normalised here, so a dot product is the cosine
    similarity; each query's k most similar bank images vote for their class with weight
    exp(similarity / T); k is capped at N."""
    bank = F.normalize(bank.float().to(device), dim=1)
    queries = F.normalize(queries.float().to(device), dim=1)
    bank_labels, query_labels = bank_labels.to(device), query_labels.to(device)
    kmax = min(max(k for k, _ in pairs), bank.shape[0])
    out = {p: torch.zeros(3, dtype=torch.long) for p in pairs}
    for start in range(0, queries.shape[0], chunk):
        sim = queries[start:start + chunk] @ bank.T                   # [q, N]
        top_sim, top_idx = sim.topk(kmax, dim=1)                      # [q, kmax], most similar first
        top_lab = bank_labels[top_idx]
        y = query_labels[start:start + chunk]
        for k, t in pairs:
            kk = min(k, kmax)                                          # k is capped at the bank size
            votes = torch.zeros(sim.shape[0], num_classes, device=device)
            votes.scatter_add_(1, top_lab[:, :kk], (top_sim[:, :kk] / t).exp())
            out[(k, t)] += torch.cat([torch.tensor([len(y)]), topk_correct(votes, y).cpu()])
    return out


def _grid_pairs(cfg: dict) -> list[tuple[int, float]]:
    ks = cfg["grid_k"] if isinstance(cfg["grid_k"], list) else [cfg["grid_k"]]
    ts = cfg["grid_temperatures"] if isinstance(cfg["grid_temperatures"], list) else [cfg["grid_temperatures"]]
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise UsageError(f"config key 'grid_k' must list whole numbers >= 1, got {cfg['grid_k']!r}")
    if any(isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0 for t in ts):
        raise UsageError(f"config key 'grid_temperatures' must list numbers > 0, got {cfg['grid_temperatures']!r}")
    pairs = [(cfg["k"], float(cfg["temperature"]))]
    return list(dict.fromkeys(pairs + [(int(k), float(t)) for k in ks for t in ts]))


def recipes(spec: RunSpec):
    if spec.epochs is not None:
        raise UsageError("--task knn trains nothing: --epochs does not apply")
    s = prepare(spec)
    cfg, data, device = s.cfg, s.data, s.device
    if not (isinstance(cfg["k"], int) and cfg["k"] >= 1):
        raise UsageError(f"config key 'k' must be a whole number >= 1, got {cfg['k']!r}")
    if not cfg["temperature"] > 0:
        raise UsageError(f"config key 'temperature' must be > 0, got {cfg['temperature']}")
    if not (isinstance(cfg["query_chunk"], int) and cfg["query_chunk"] >= 1):
        raise UsageError(f"config key 'query_chunk' must be a whole number >= 1, got {cfg['query_chunk']!r}")
    pairs = _grid_pairs(cfg)
    pooling, blocks = frozen_data.feature_choice(cfg)
    acc: dict = {}
    settings = None
    if spec.search:
        from maebench import search
        from maebench.data.heldout import stratified
        settings = search.settings(spec, s.entry.arch, cfg)
        if set(settings.space) - {"k", "temperature"}:
            raise UsageError(f"k-NN searches k and temperature, not "
                             f"{', '.join(sorted(set(settings.space) - {'k', 'temperature'}))}")
        cfg.setdefault("search", settings.as_config(spec.seed, joint=True))       # in the row's config: a searched result
        fit_i, held_i = stratified(data.train_targets, settings.holdout, spec.seed, data.classes)   # before a row

    def choose(bank, bank_y, run) -> tuple[tuple[int, float], dict]:
        """The held-out selection: (chosen (k, T), the search record)."""
        t0 = time.perf_counter()
        points = settings.points()
        space_pairs = [(int(p.get("k", cfg["k"])), float(p.get("temperature", cfg["temperature"]))) for p in points]
        held = knn_grid_counts(bank[fit_i], bank_y[fit_i], bank[held_i], bank_y[held_i], data.num_classes,
                               list(dict.fromkeys(space_pairs)), chunk=cfg["query_chunk"], device=device)
        scores = [accuracy_from_counts(held[p])["top1"] for p in space_pairs]
        best = max(range(len(points)), key=lambda i: (scores[i], -i))     # ties: the earlier point
        trials = [search.Trial(p, "complete", sc) for p, sc in zip(points, scores)]
        rec = search.record(settings, trials, "top1", where=str(run.out_dir), wall_s=time.perf_counter() - t0,
                            joint=True, chosen=best, cost=0.0)
        return space_pairs[best], rec

    def compute(run) -> Outcome:
        t0 = time.perf_counter()
        fr = frozen_data.load(spec.backbone, spec.seed, s, blocks=blocks, pooling=(pooling,),
                              batch_size=cfg["batch_size"], task="knn")
        bank, bank_y = fr.train.select(pooling, blocks)[fr.subset], fr.train_labels
        rank, world = dist.rank(), dist.world_size()
        val_f, val_y = fr.val.select(pooling, blocks)[rank::world], fr.val.labels[rank::world]   # this shard
        encoded = (len(fr.train.labels) + len(fr.val.labels)) if "hit" not in fr.info["feature_cache"].values() else 0
        headline, extra = pairs[0], {}
        if settings is not None:              # every process chooses alike: the same bank, the same search
            headline, extra["search"] = choose(bank, bank_y, run)   # a later seed's: replaced by the runner
            pairs[:] = list(dict.fromkeys([headline, *pairs]))
        counts = knn_grid_counts(bank, bank_y, val_f, val_y, data.num_classes, pairs,
                                 chunk=cfg["query_chunk"], device=device)
        acc.update({p: accuracy_from_counts(dist.all_reduce_sum(c.to(device))) for p, c in counts.items()})
        metrics = {**acc[headline], **fr.info, **extra,
                   "grid": [{"k": k, "temperature": t, "top1": a["top1"], "top5": a["top5"]} for (k, t), a in acc.items()]}
        rec = frozen_data.label_subset_record(s, spec.seed, run.out_dir)
        if rec:
            metrics["label_subset"] = rec
        wall = time.perf_counter() - t0
        # images_per_s is the images/s of optimizer steps everywhere (results.py); k-NN takes none: NULL,
        # and the feature extraction's own rate goes into the metrics
        metrics["encode_images_per_s"] = encoded / wall if encoded else None
        return Outcome(run.run_id, metrics, peak_mem_mb=peak_memory_mb(device))

    def report(metrics: dict, run) -> None:
        ks = sorted({k for k, _ in pairs})
        ts = sorted({t for _, t in pairs})
        print("knn: top-1 for each k (rows) and T (columns)")
        print("  k \\ T " + "".join(f"{t:>8g}" for t in ts))
        for k in ks:
            print(f"  {k:<6d}" + "".join(f"{acc[(k, t)]['top1']:8.2f}" if (k, t) in acc else "       -" for t in ts))
        print(f"knn: top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f} at k={pairs[0][0]}, T={pairs[0][1]:g} "
              f"({metrics['val_images']} val images; run {run.run_id})")

    yield Recipe(task="knn", backbone=spec.backbone, dataset=data.name, config=cfg, device=device,
                 backbone_info=runs.backbone_info(s.entry), checkpoint_sha256=s.entry.sha256,
                 compute=compute, report=report)
