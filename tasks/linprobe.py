"""Linear probing (MAE paper Table 10): a frozen encoder, and on its [cls] output a BatchNorm1d
without affine parameters followed by a linear layer, trained with LARS.

Two modes that compute the same thing when the training images get the fixed eval crop:
- direct: every step runs the frozen encoder on the batch (needed for the paper's
  random-resized-crop augmentation, which changes the features every epoch);
- cached (`--cached-features`): the encoder runs once per image, the features stay in memory and
  the probe trains on them, so an E-epoch probe costs one encoder pass instead of E.
Both modes seed the probe the same way and see the batches in the same order, so they give the
same probe up to float rounding (a test checks it).

The paper's protocol is one learning rate, which is a guess. `--sweep` (the default with
`--cached-features`; `--no-sweep` keeps the single lr) trains a grid of heads over the cached
features in one pass per epoch (tasks/linear_sweep.py), chooses one on a held-out slice of the
training set (`--holdout`, 10 %), retrains it on the whole training set and scores it once on
the evaluation split. `--head logreg` fits L-BFGS logistic regression instead, its C chosen the
same way (tasks/logreg.py). Cached features come from the one feature cache
(tasks/feature_cache.py) shared with k-NN.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from maebench import distributed as dist
from maebench import engine, optim, runs
from maebench.classification import evaluate
from maebench.errors import UsageError
from maebench.lr_rule import peak_lr
from maebench.runner import Outcome, Recipe
from maebench.runspec import RunSpec
from maebench.data import heldout
from maebench.tasks import features, frozen_data, linear_sweep
from maebench.tasks.classification_data import eval_transform, probe_train_transform
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


def make_head(dim: int, num_classes: int, seed: int) -> ProbeHead:
    torch.manual_seed(seed)                                 # the same probe in both modes
    return ProbeHead(dim, num_classes)


def _mode_flags(spec: RunSpec) -> dict:
    """Config keys set by --cached-features / --search / --sweep / --no-sweep / --head."""
    head = spec.option("head")
    sweep = spec.options.get("sweep")
    cached = bool(spec.option("cached_features"))
    if head == "logreg" and sweep is False:
        raise UsageError("--head logreg chooses C on the held-out slice: it has no --no-sweep mode")
    if spec.search and sweep is False:
        raise UsageError("--search is the sweep of linear heads: drop --no-sweep")
    if sweep is None:
        sweep = spec.search or cached or head == "logreg"      # the sweep is the default with cached features
    extra: dict = {"head": head}
    if spec.search_space and not sweep:
        raise UsageError("--search-space applies to the sweep (--search, --sweep or --cached-features)")
    if spec.option("holdout") is not None and not sweep:
        raise UsageError("--holdout applies to the sweep (--search, --sweep, --cached-features or --head logreg)")
    if sweep:
        extra.update(cached_features=True, augment=False, sweep=True)
    elif cached:
        extra.update(cached_features=True, augment=False, sweep=False)
    return extra


def recipes(spec: RunSpec):
    s = prepare(spec, extra=_mode_flags(spec))
    cfg = s.cfg
    if cfg["head"] not in ("linear", "logreg"):
        from maebench.errors import unknown
        raise unknown("head", cfg["head"], ("linear", "logreg"))
    if cfg["sweep"] and cfg["augment"]:
        raise UsageError("the sweep trains on cached features (fixed eval crop): it needs augment false")
    if cfg["sweep"] or cfg["head"] == "logreg":
        from maebench import search
        settings = search.settings(spec, s.entry.arch, cfg, own_first=False)   # the grid, the held-out part
        if cfg["head"] == "logreg":
            from maebench.tasks import logreg
            cfg["holdout"] = settings.holdout
            yield logreg.recipe(spec, s)
            return
        yield sweep_recipe(spec, s, settings)
        return
    if cfg["cached_features"] and cfg["augment"]:
        raise UsageError("cached features are computed once with the fixed eval crop: "
                         "they need augment false (drop --set augment=true or --cached-features)")
    check_batch(cfg, len(s.data.train_indices))
    encoder = frozen_data.load_encoder(spec.backbone, cfg["img_size"], spec.seed)
    head = make_head(features.feature_dim(encoder), s.data.num_classes, spec.seed)
    yield (cached_recipe if cfg["cached_features"] else direct_recipe)(spec, s, encoder, head)


def _recipe(spec: RunSpec, s: Setup, groups: list[dict], mode: str, **fields) -> Recipe:
    """The row's fields every linprobe mode shares; prints the mode and the optimizer groups."""
    if dist.is_main():
        d = s.data
        print(f"linprobe ({mode}): {spec.backbone} on {d.name} ({len(d.train_indices)} labelled / "
              f"{d.n_train_total} train, {d.n_val} val, {d.num_classes} classes)")
        print(optim.describe_groups(groups, engine.TrainConfig.from_cfg(s.cfg).peak_lr()))
    return Recipe(task="linprobe", backbone=spec.backbone, dataset=s.data.name, config=s.cfg, device=s.device,
                  backbone_info=runs.backbone_info(s.entry), checkpoint_sha256=s.entry.sha256, desc="linprobe",
                  param_groups=groups, loss_fn=cross_entropy, report=_report, **fields)


def _report(metrics: dict, run) -> None:
    print(f"linprobe: top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f}  "
          f"({metrics['val_images']} val images; run {run.run_id})")


def direct_recipe(spec: RunSpec, s: Setup, encoder: nn.Module, head: ProbeHead) -> Recipe:
    cfg, device = s.cfg, s.device
    model = LinearProbe(encoder, head)
    val_set = s.data.val_set(eval_transform(cfg, s.entry.mean, s.entry.std))
    from maebench.tasks.finetune import forward_flops
    # engine counts 3 x forward per image; the frozen encoder only runs forward
    flops = forward_flops(model, cfg["img_size"]) / 3 + 2 * features.feature_dim(encoder) * s.data.num_classes

    def evaluate_fn(m: nn.Module) -> dict:
        return evaluate(m, val_set, batch_size=cfg["eval_batch_size"], device=device, num_workers=cfg["num_workers"])

    return _recipe(spec, s, lars_groups(model, cfg["weight_decay"]), "direct: the encoder runs on every batch",
                   model=model, train_set=s.data.train_set(probe_train_transform(cfg, s.entry.mean, s.entry.std)),
                   evaluate=evaluate_fn, flops_per_image=flops)


def cached_recipe(spec: RunSpec, s: Setup, encoder: nn.Module, head: ProbeHead) -> Recipe:
    """The probe on stored features: they are extracted (or read from the cache) inside the run,
    then the head trains on them through the same loop."""
    cfg, device = s.cfg, s.device
    pooling, blocks = frozen_data.feature_choice(cfg)
    recipe = _recipe(spec, s, lars_groups(head, cfg["weight_decay"]),
                     "cached features: the encoder runs once per image", model=head,
                     fit_overrides={"num_workers": 0})    # features are in memory: workers would only add copies

    def setup(run) -> None:
        fr = frozen_data.load(spec.backbone, spec.seed, s, blocks=blocks, pooling=(pooling,),
                              batch_size=cfg["eval_batch_size"], task="linprobe")
        train_f, train_y = fr.train.select(pooling, blocks)[fr.subset], fr.train_labels   # [N, D], [N]
        rank, world = dist.rank(), dist.world_size()
        val_set = TensorDataset(fr.val.select(pooling, blocks)[rank::world], fr.val.labels[rank::world])  # this shard
        recipe.train_set = TensorDataset(train_f, train_y)
        recipe.evaluate = lambda m: evaluate(m, val_set, batch_size=cfg["eval_batch_size"], device=device,
                                             sharded=True)
        recipe.flops_per_image = 2 * train_f.shape[1] * s.data.num_classes
        extra = {**fr.info, **_label_subset(s, spec.seed, run)}
        recipe.metrics = lambda result, _run: {**result.metrics, **extra}

    recipe.setup = setup
    return recipe


def _label_subset(s: Setup, seed: int, run) -> dict:
    rec = frozen_data.label_subset_record(s, seed, run.out_dir)
    return {"label_subset": rec} if rec else {}


def sweep_recipe(spec: RunSpec, s: Setup, settings) -> Recipe:
    """The search (maebench/search.py) of the linear probe: every head of the space trained
    together on the fit part of the training set, chosen on its held-out part, the chosen head
    retrained on all of it and scored once on the evaluation split."""
    from maebench import search
    cfg, device, seed = s.cfg, s.device, spec.seed
    cfg.setdefault("search", settings.as_config(seed, joint=True))     # in the row's config: a searched result
    probe_kind = getattr(s.entry, "probe", None)          # the family's documented probe feature
    specs, probe_note = linear_sweep.resolve_probe(linear_sweep.grid(settings.space), probe_kind)
    pooling = linear_sweep.channels(specs)
    blocks = max(h.blocks for h in specs)
    # the held-out slice from the labels alone, so an empty one fails before a row exists
    fit_i, held_i = heldout.stratified(torch.tensor(s.data.train_targets), settings.holdout, seed, s.data.classes)
    nc = s.data.num_classes

    def compute(run) -> Outcome:
        fr = frozen_data.load(spec.backbone, seed, s, blocks=blocks, pooling=pooling,
                              batch_size=cfg["eval_batch_size"], task="linprobe (sweep)")
        x, y = fr.train_features(), fr.train_labels
        t0 = time.perf_counter()
        bank = linear_sweep.train(specs, x[fit_i], y[fit_i], cfg, pooling=pooling, num_classes=nc, seed=seed, device=device)
        held = bank.evaluate(x[held_i], y[held_i])
        best = linear_sweep.select(specs, held)
        sweep_s = time.perf_counter() - t0
        chosen = specs[best]
        final_bank = linear_sweep.train([chosen], x, y, cfg, pooling=pooling, num_classes=nc, seed=seed, device=device)
        final = final_bank.evaluate(fr.val.features, fr.val.labels)[0]
        batch = min(int(cfg["batch_size"]), len(fit_i))
        metrics = {"top1": final["top1"], "top5": final["top5"], "val_images": len(fr.val.labels), **fr.info,
                   "sweep_train_s": round(sweep_s, 3),
                   "sweep": {"head": "linear", "grid": {"lr": sorted({h.lr for h in specs}),
                                                        "weight_decay": sorted({h.weight_decay for h in specs}),
                                                        "pooling": list(dict.fromkeys(h.pooling for h in specs)),
                                                        "blocks": sorted({h.blocks for h in specs}),
                                                        "probe_feature": probe_kind or "token"},
                             "heads": [{**h.as_dict(), "holdout_top1": sc["top1"], "holdout_loss": sc["loss"]}
                                       for h, sc in zip(specs, held)],
                             "chosen": {**chosen.as_dict(), "peak_lr": peak_lr(chosen.lr, batch),
                                        "holdout_top1": held[best]["top1"]},
                             "holdout": settings.holdout, "fit_images": len(fit_i),
                             "holdout_images": len(held_i), "diverged": len(bank.diverged),
                             "lr_at_grid_edge": len({h.lr for h in specs}) > 1 and chosen.lr in (
                                 min(h.lr for h in specs), max(h.lr for h in specs)),
                             "selected_on": "held-out slice of the training set"},
                   "search": search.record(settings, [search.Trial(h.as_point(), "complete", sc["top1"])
                                                      for h, sc in zip(specs, held)], "top1", joint=True,
                                           where=str(run.out_dir), wall_s=sweep_s, chosen=best,
                                           cost=1.0 - settings.holdout),
                   **_label_subset(s, seed, run)}
        printed.update(held=held, best=best, final=final)
        return Outcome(run.run_id, metrics)

    printed: dict = {}

    def report(metrics: dict, run) -> None:
        if probe_note:
            print(f"linprobe (sweep): {probe_note}")
        _print_sweep(specs, printed["held"], printed["best"], printed["final"], metrics["val_images"], run.run_id)

    return Recipe(task="linprobe", backbone=spec.backbone, dataset=s.data.name, config=cfg, device=device,
                  backbone_info=runs.backbone_info(s.entry), checkpoint_sha256=s.entry.sha256,
                  compute=compute, report=report)


def _print_sweep(specs, held, best, final, n_val, run_id) -> None:
    print(f"linprobe (sweep): {len(specs)} heads; best held-out top-1 per input:")
    for pool in dict.fromkeys(h.pooling for h in specs):
        for b in sorted({h.blocks for h in specs}):
            idx = [i for i, h in enumerate(specs) if h.pooling == pool and h.blocks == b]
            if idx:
                i = max(idx, key=lambda j: held[j]["top1"])
                print(f"  {pool} last {b}: lr {specs[i].lr:g}, wd {specs[i].weight_decay:g} -> {held[i]['top1']:.2f}")
    c = specs[best]
    print(f"linprobe (sweep): chosen lr {c.lr:g}, weight decay {c.weight_decay:g}, {c.pooling}, last {c.blocks} "
          f"block{'s' * (c.blocks > 1)} (held-out top1 {held[best]['top1']:.2f}); retrained on all training images: "
          f"top1 {final['top1']:.2f}  top5 {final['top5']:.2f} ({n_val} val images; run {run_id})")
    lrs = sorted({h.lr for h in specs})
    if len(lrs) > 1 and c.lr in (lrs[0], lrs[-1]):
        print(f"linprobe (sweep): note: the chosen lr {c.lr:g} is at the edge of the grid "
              f"({lrs[0]:g}..{lrs[-1]:g}); widen the search space (--search-space base_lr=...) to be sure it is the best")
