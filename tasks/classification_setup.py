"""What every classification task does before it trains: resolve the backbone entry, build the
effective config, open the data and pick the device. Everything that can be wrong with the
user's input is found here, before a results row exists (see docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maebench.errors import UsageError
from maebench.runspec import RunSpec
from maebench.tasks.classification_data import ClassificationData, open_data


@dataclass
class Setup:
    cfg: dict                    # the effective config, stored with the result
    entry: Any                   # backbones.registry.BackboneEntry
    data: ClassificationData
    device: Any                  # torch.device


def load_config(spec: RunSpec, entry: Any, extra: dict[str, Any] | None = None) -> dict:
    """The effective config with the task's flags; fills img_size and a null global_pool from the
    backbone's entry (its family's own pooled feature) and checks the keys the range checks of
    maebench.config do not cover."""
    arch, img_size = entry.arch, entry.img_size
    flags = {"labels_per_class": spec.option("labels_per_class"), "label_fraction": spec.option("label_fraction"),
             **(extra or {})}
    if spec.program.name == "knn":
        spec = spec.replace(epochs=None)      # no training: --epochs has no key to set
    cfg = spec.load_config(arch=arch, flags=flags)
    if cfg.get("img_size") is None:
        cfg["img_size"] = int(img_size)
    if "global_pool" in cfg and cfg["global_pool"] is None:
        from maebench.backbones.catalogue import finetune_pool
        cfg["global_pool"] = finetune_pool(entry)              # the family's own, in the row's config
    if cfg.get("labels_per_class") is not None and cfg.get("label_fraction") is not None:
        raise UsageError("give at most one of labels_per_class (--labels-per-class) and "
                         "label_fraction (--label-fraction)")
    lpc = cfg.get("labels_per_class")
    if lpc is not None and (isinstance(lpc, bool) or not isinstance(lpc, int) or lpc < 1):
        raise UsageError(f"config key 'labels_per_class' must be a whole number >= 1, got {lpc!r}")
    if not 0 < float(cfg.get("eval_crop_pct", 1.0)) <= 1:
        raise UsageError(f"config key 'eval_crop_pct' must lie in (0, 1], got {cfg['eval_crop_pct']}")
    if cfg.get("global_pool") not in (None, "avg", "token"):
        from maebench.errors import unknown
        raise unknown("global_pool", cfg["global_pool"], ("avg", "token"))
    return cfg


def prepare(spec: RunSpec, extra: dict[str, Any] | None = None) -> Setup:
    """Backbone entry -> config -> data -> device, each checked; nothing is written yet."""
    if not spec.backbone:
        raise UsageError(f"--task {spec.program.name} needs --backbone NAME (see `maebench backbones list`)")
    from maebench.backbones import registry
    entry = registry.entry(spec.backbone)                 # unknown name: UsageError with suggestions
    if not entry.present:
        raise registry.missing_weights_error(entry)
    cfg = load_config(spec, entry, extra)
    data = open_data(spec.data, labels_per_class=cfg.get("labels_per_class"),
                     label_fraction=cfg.get("label_fraction"), seed=spec.seed, holdout=spec.trial_holdout,
                     score_held_out=not spec.trial_reported)
    from maebench import distributed
    device = distributed.init(spec.device, deterministic=spec.deterministic)
    return Setup(cfg=cfg, entry=entry, data=data, device=device)


def check_batch(cfg: dict, n_train: int, *, even: bool = False) -> None:
    """The engine needs at least one full global batch; mixup needs an even per-process batch."""
    from maebench import distributed
    from maebench.microbatch import micro_batch
    micro = micro_batch(cfg["batch_size"], distributed.world_size(), cfg["accum_iter"])
    if cfg["batch_size"] > n_train:
        raise UsageError(f"batch_size {cfg['batch_size']} is larger than the {n_train} labelled training "
                         "images: lower --batch-size")
    if even and micro % 2:
        raise UsageError(f"mixup/cutmix pair images within a batch: the per-process batch {micro} must be even")
