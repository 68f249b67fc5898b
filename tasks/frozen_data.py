"""What the frozen-feature protocols (linear-probe sweep, single-lr cached probe, logistic
regression, k-NN) share: the encoder's features of the labelled training images and of the val
split, from the one feature cache (tasks/feature_cache.py), and the record of the seeded
low-label subset stored with the results row.

With a low-label subset, an entry for the whole training split serves it when the cache has one
(every seed and label budget then reuses that entry); otherwise only the labelled images are
encoded, as an entry of their own: 1,000 labels per class out of Fashion-MNIST's 60,000 images
cost a sixth of the whole split's encoder pass."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from maebench import distributed as dist
from maebench.tasks import feature_cache
from maebench.tasks.classification_data import eval_transform
from maebench.tasks.classification_setup import Setup


@dataclass
class Frozen:
    train: feature_cache.CachedSplit        # the whole training split, or its labelled images alone
    val: feature_cache.CachedSplit
    subset: torch.Tensor                    # indices of the labelled training images in `train`
    info: dict = field(default_factory=dict)

    @property
    def train_labels(self) -> torch.Tensor:
        return self.train.labels[self.subset]

    def train_features(self) -> torch.Tensor:
        return self.train.features[self.subset]


def feature_choice(cfg: dict) -> tuple[str, int]:
    """(feature_pooling, feature_blocks) of the config, checked before any row exists."""
    from maebench.errors import UsageError, unknown
    pooling, blocks = cfg["feature_pooling"], cfg["feature_blocks"]
    if pooling not in ("probe", "cls", "avg"):
        raise unknown("feature_pooling", pooling, ("probe", "cls", "avg"))
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1 or (pooling == "probe" and blocks != 1):
        raise UsageError(f"config key 'feature_blocks' must be a whole number >= 1 (1 with feature_pooling probe), "
                         f"got {blocks!r}")
    return pooling, blocks


def load_encoder(backbone: str, img_size: int, seed: int) -> torch.nn.Module:
    """The frozen encoder, in eval mode; a scratch backbone gets a seeded init."""
    from maebench.backbones import registry
    torch.manual_seed(seed)
    encoder, _ = registry.load(backbone, img_size=img_size, num_classes=0, global_pool="probe")
    return encoder.requires_grad_(False).eval()


def load(backbone: str, seed: int, s: Setup, *, blocks: int, pooling: tuple[str, ...], batch_size: int,
         task: str) -> Frozen:
    """Features of both splits ([N, len(pooling), blocks, D]); the cache unless feature_cache false."""
    from maebench.data.imagefolder import ImageFolder
    cfg = s.cfg
    t0 = time.perf_counter()
    encoder = load_encoder(backbone, cfg["img_size"], seed)
    tf = eval_transform(cfg, s.entry.mean, s.entry.std)
    # 'probe' (the backbone's own probe feature) is the [cls] token of a plain ViT: read it from
    # the same cache entries as 'cls'; other backbones get an entry of their own
    from maebench.tasks.features import probe_is_cls
    stored = tuple("cls" if p == "probe" and probe_is_cls(encoder) else p for p in pooling)
    kw = dict(transform=repr(tf), blocks=blocks, pooling=stored, batch_size=batch_size, device=s.device,
              num_workers=cfg["num_workers"], use_cache=bool(cfg.get("feature_cache", True)))
    subset = torch.as_tensor(s.data.train_indices, dtype=torch.long)
    out = {}
    for split in ("train", "val"):
        ds = ImageFolder(s.data.root, split, transform=tf)
        names = {"backbone_name": backbone, "dataset_name": s.data.name, "split": split}
        got = None
        if split == "train" and len(subset) < len(ds):
            got = feature_cache.get(encoder, ds, names=names, **kw, encode=False)     # the whole split, if cached
            if got is None:                       # else the labelled images only (an entry of their own)
                ds, subset = ds.subset(subset.tolist()), torch.arange(len(subset))
        out[split] = got if got is not None else feature_cache.get(encoder, ds, names=names, **kw)
    for split in out.values():
        split.pooling = tuple(pooling)            # select() by the names the task asked for
    secs = time.perf_counter() - t0
    info = {"feature_cache": {k: v.status for k, v in out.items()},
            "feature_extraction_s": round(sum(v.extract_s for v in out.values()), 3),
            "feature_load_s": round(secs, 3)}
    if dist.is_main():
        d = s.data
        how = ", ".join(f"{k} {v.status}" for k, v in out.items())
        print(f"{task}: {backbone} on {d.name} ({len(subset)} labelled / {d.n_train_total} train, "
              f"{d.n_val} val, {d.num_classes} classes); features: {how} ({secs:.1f} s)")
    return Frozen(out["train"], out["val"], subset, info)


def label_subset_record(s: Setup, seed: int, out_dir: Path | None = None) -> dict | None:
    """The low-label subset as stored with the row: how it was drawn (N per class or fraction F,
    the seed), its size and a SHA-256 of its sorted indices into the train split; the indices
    themselves too when there are at most 2,000 of them, and always in out_dir/label_subset.json."""
    d, cfg = s.data, s.cfg
    if cfg.get("labels_per_class") is None and cfg.get("label_fraction") is None:
        return None
    idx = [int(i) for i in d.train_indices]
    rec = {"labels_per_class": cfg.get("labels_per_class"), "label_fraction": cfg.get("label_fraction"),
           "seed": seed, "n": len(idx), "of": d.n_train_total,
           "sha256": hashlib.sha256(json.dumps(idx).encode()).hexdigest()}
    if len(idx) <= 2000:
        rec["indices"] = idx
    if out_dir is not None and dist.is_main():
        (Path(out_dir) / "label_subset.json").write_text(json.dumps({**rec, "indices": idx}))
    return rec
