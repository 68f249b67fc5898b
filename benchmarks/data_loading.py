"""Data-loading throughput: images/s a DataLoader delivers with 0, 1, 2 worker processes.

The readers and training transforms are the tasks' own, on the embedded generated sets
(`maebench.data.default_dataset`):
    classification, pretraining transform   ImageFolder + RandomResizedCrop + flip (MAE pretraining)
    classification, fine-tuning transform   ImageFolder + RRC + RandAugment + random erasing (timm)
    COCO                                    CocoInstances (masks decoded) + large-scale jitter
    ADE20K                                  SegmentationPairs + resize / crop / flip / photometric

Nothing trains: the loop only pulls batches. The first batch (worker start-up, reported
apart) is excluded from the rate, so the number is the steady rate a training loop would see.
"Per worker" divides by the number of processes doing the decoding (0 workers = the main one).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class LoaderRate:
    reader: str
    workers: int
    batch_size: int
    images: int                 # timed images (after the first batch)
    seconds: float
    startup_s: float            # until the first batch arrived

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_worker(self) -> float:
        return self.images_per_s / max(1, self.workers)


def readers(img_size: int) -> dict[str, tuple]:
    """name -> (dataset, collate_fn, batch size), each with the training transforms at img_size."""
    from maebench.backbones import registry
    from maebench import config
    from maebench.data import default_dataset
    from maebench.data.coco import CocoInstances
    from maebench.data.imagefolder import ImageFolder
    from maebench.data.layout import resolve_coco
    from maebench.data.transforms import classification_train
    from maebench.tasks.classification_data import finetune_train_transform
    from maebench.tasks.coco.data import collate, train_transform

    entry = registry.entry("scratch-vit-s")          # ImageNet mean / std
    cls_root = default_dataset("classification")
    mae_cfg = config.load("pretrain_mae")
    ft_cfg = config.load("finetune", flags={"img_size": img_size})
    coco_cfg = config.load("coco", arch="vit-micro", sets=[f"img_size={img_size}"])
    paths = resolve_coco(default_dataset("coco"))
    out = {
        "classification, pretraining transform": (ImageFolder(cls_root, "train", transform=classification_train(
            img_size, entry.mean, entry.std, scale=mae_cfg["crop_scale"])), None, 32),
        "classification, fine-tuning transform": (ImageFolder(cls_root, "train", transform=finetune_train_transform(
            ft_cfg, entry.mean, entry.std)), None, 32),
        "COCO, LSJ + masks": (CocoInstances(paths["train_images"], paths["train_json"], train=True,
                                            transforms=train_transform(coco_cfg, entry.mean)), collate, 4),
        "ADE20K, train transform": (_ade20k_train(img_size, entry), None, 8),
    }
    return out


def _ade20k_train(img_size: int, entry):
    import argparse

    from maebench import config
    from maebench.data import default_dataset
    from maebench.tasks.ade20k import check_config, open_data, task_flags

    root = default_dataset("ade20k")
    args = argparse.Namespace(epochs=None, batch_size=None, num_classes=None, ignore_index=None,
                              reduce_zero_label=None, deterministic=False)
    cfg = check_config(config.load("ade20k", arch="vit-micro", flags=task_flags(args, root),
                                   sets=[f"img_size={img_size}", f"crop_size={img_size}", f"stride={img_size // 2}"]),
                       entry.patch_size)
    return open_data(root, cfg, entry)[0]


def rate(name: str, dataset, collate_fn, batch_size: int, workers: int, images: int, seed: int = 0) -> LoaderRate:
    """Pull about `images` images (the dataset repeated as needed, seeded shuffle) and time it."""
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(seed)
    n = max(images, 2 * batch_size)
    order = torch.cat([torch.randperm(len(dataset), generator=g) for _ in range(-(-n // len(dataset)))])[:n]
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
                        collate_fn=collate_fn, drop_last=True)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    count = sum(batch_size for _ in it)
    t2 = time.perf_counter()
    del it, loader
    return LoaderRate(name, workers, batch_size, count, t2 - t1, t1 - t0)


def measure(img_size: int, *, workers=(0, 1, 2), images: dict[str, int] | None = None, log=print) -> list[LoaderRate]:
    """Every reader at every worker count; `images` per reader (default: 4 passes' worth, capped)."""
    rows = []
    for name, (dataset, collate_fn, batch) in readers(img_size).items():
        n = (images or {}).get(name, min(4 * len(dataset), 256))
        for w in workers:
            r = rate(name, dataset, collate_fn, batch, w, n)
            log(f"  {name}, {w} workers: {r.images_per_s:.0f} images/s (start-up {r.startup_s:.2f} s)")
            rows.append(r)
    return rows
