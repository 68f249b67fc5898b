"""The loader against the step it feeds, at the demo's MAE pretraining size.

The set: the fashion world's classification split (60k Fashion-MNIST images, 28 px PNGs) read
with the MAE pretraining transform at the demo's size (pretrain_mae.yaml, vit-micro: 32 px,
batch 256). Measured in one process, on one thread:

- the DataLoader over PIL images (the per-sample torchvision transform) with 0 and with W
  workers (W = the physical cores), images/s after the first batch;
- the tensor loader (maebench/data/tensor_loader.py): the one-time decode (cold: from the
  PNGs; warm: from its cache file), then images/s of batched crop + flip + normalise;
- the MAE vit-micro train step (forward, backward, fused AdamW) on batches of that size:
  the images/s the loader must keep up with.

Loading's share of a step = step images/s / loader images/s (the main process loads, then
steps: with 0 workers the two add up). The issue's bar: at most 10 %.

    python benchmarks/loader_speed.py --data /path/to/fashion/classification [--batches 8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rate(loader, batches: int) -> float:
    it = iter(loader)
    next(it)                                     # start-up (workers, first batch) excluded
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
        n += len(x)
    return n / (time.perf_counter() - t0)


def measure(data: str | Path, *, batches: int = 8, steps: int = 5, log=print) -> dict:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from maebench import config
    from maebench.backbones.mae import create_mae
    from maebench.data import tensor_loader as tl
    from maebench.data.imagefolder import ImageFolder
    from maebench.data.transforms import classification_train
    from maebench.dataloaders import physical_cores

    c = config.load("pretrain_mae", arch="vit-micro")
    bs, size = c["batch_size"], c["img_size"]
    ds = ImageFolder(data, "train", transform=classification_train(size, c["mean"], c["std"], scale=c["crop_scale"]))
    out: dict = {"images": len(ds), "batch": bs, "img_size": size, "threads": torch.get_num_threads(), "loaders": []}
    g = torch.Generator().manual_seed(0)
    for workers in sorted({0, physical_cores()}):
        dl = DataLoader(ds, batch_size=bs, sampler=RandomSampler(ds, generator=g), num_workers=workers, drop_last=True)
        r = _rate(dl, batches)
        out["loaders"].append({"loader": f"DataLoader, PIL transform, {workers} worker(s)", "images_per_s": r})
        log(f"  DataLoader {workers} workers: {r:.0f} images/s")
    old_home = os.environ.get("MAEBENCH_HOME")
    os.environ["MAEBENCH_HOME"] = tempfile.mkdtemp(prefix="maebench-loader-")     # a cold cache
    try:
        t0 = time.perf_counter()
        images, labels = tl.decode(ds, log=lambda s: None)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        tl.decode(ds, log=lambda s: None)
        warm = time.perf_counter() - t0
    finally:
        if old_home is None:
            os.environ.pop("MAEBENCH_HOME")
        else:
            os.environ["MAEBENCH_HOME"] = old_home
    loader = tl.TensorLoader(images, labels, tl.augmentation_of(ds.transform), sampler=RandomSampler(ds, generator=g),
                             batch_size=bs, generator=g, device=torch.device("cpu"))
    r = _rate(loader, batches)
    out["loaders"].append({"loader": "tensor loader (uint8 in memory, batched crop + flip)", "images_per_s": r})
    out["decode_cold_s"], out["decode_warm_s"] = cold, warm
    log(f"  tensor loader: {r:.0f} images/s; decode {cold:.1f} s cold, {warm:.1f} s from its cache")

    torch.manual_seed(0)
    m = create_mae("vit-micro", img_size=size, patch_size=c["patch_size"], decoder_embed_dim=c["decoder_embed_dim"],
                   decoder_depth=c["decoder_depth"], decoder_num_heads=c["decoder_num_heads"], target="norm-pixel")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    x = next(iter(loader))[0]
    ts = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        m(x, mask_ratio=c["mask_ratio"])[0].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            ts.append(time.perf_counter() - t0)
    out["step_images_per_s"] = bs / statistics.median(ts)
    for row in out["loaders"]:
        row["share_of_step"] = out["step_images_per_s"] / row["images_per_s"]
    log(f"  MAE vit-micro step: {out['step_images_per_s']:.0f} images/s")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="an ImageFolder root (the fashion world's classification/)")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    r = measure(a.data, batches=a.batches)
    for row in r["loaders"]:
        print(f"{row['loader']}: {row['images_per_s']:.0f} images/s, {100 * row['share_of_step']:.0f}% of a step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
