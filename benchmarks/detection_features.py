"""What a frozen backbone's features hold on the detection canvases (a diagnostic, not a timing).

Two numbers per registered backbone, at the COCO recipe's canvas size, no training of the detector:
  RoI probe   the ground-truth boxes RoI-aligned (2 x 2, aligned=True) from one block's output,
              a linear classifier (L-BFGS, standardised features) fitted on the train canvases'
              objects and scored on the val canvases' objects: how much class information sits
              where the detector's RoI heads read it.
  position    the share of a block output's variance that is the per-position mean over images:
              how much of a feature says "where" rather than "what" (background patches of
              equal content differ only by their position embedding).

    python benchmarks/detection_features.py --coco DIR [--backbones A,B,...] [--blocks 0,3]

DIR is a COCO-layout set (the fashion world's `coco/`); the backbones are names in the registry
($MAEBENCH_HOME), default the demo's five.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

DEMO = ("demo-mae-norm-pixel", "demo-mae-pixel", "demo-mocov3", "demo-supervised", "scratch-vit-micro")


def objects(root: Path, split: str):
    """(images [N, 3, H, W] in [0, 1], boxes per image, labels [M]) of a COCO split."""
    from maebench.data.coco import CocoInstances
    from maebench.tasks.coco.data import eval_transform

    ds = CocoInstances(str(root / split), str(root / "annotations" / f"instances_{split}.json"), train=False,
                       transforms=eval_transform)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([im for im, _ in items]), [t["boxes"] for _, t in items], torch.cat([t["labels"] for _, t in items])


def block_maps(vit, images, mean, std, blocks: list[int]) -> list[torch.Tensor]:
    x = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return vit.forward_intermediates(x, indices=blocks, norm=False, output_fmt="NCHW", intermediates_only=True)


def roi_features(fmap: torch.Tensor, boxes, image_side: int) -> torch.Tensor:
    """Boxes in image pixels -> [objects, channels * 4]; the map's scale is read off its size (any patch)."""
    from torchvision.ops import roi_align

    return roi_align(fmap, boxes, output_size=2, spatial_scale=fmap.shape[-1] / image_side, sampling_ratio=2,
                     aligned=True).flatten(1)


def linear_probe(f_train, y_train, f_val, y_val, num_classes: int) -> float:
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_val = (f_train - mu) / sd, (f_val - mu) / sd
    torch.manual_seed(0)
    head = torch.nn.Linear(f_train.shape[1], num_classes)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=300)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(f_train), y_train) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return (head(f_val).argmax(1) == y_val).float().mean().item() * 100


def position_share(fmap: torch.Tensor) -> float:
    return (fmap.mean(0).var(dim=(1, 2)).sum() / fmap.var(dim=(0, 2, 3)).sum()).item()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coco", required=True, type=Path, help="COCO-layout directory (the fashion world's coco/)")
    ap.add_argument("--backbones", default=",".join(DEMO))
    ap.add_argument("--blocks", default="0,3", help="block indices whose outputs are probed")
    args = ap.parse_args(argv)
    from maebench import config
    from maebench.backbones import registry
    from maebench.tasks.coco.model import canvas_size

    blocks = [int(b) for b in args.blocks.split(",")]
    train, val = objects(args.coco, "train"), objects(args.coco, "val")
    num_classes = int(max(train[2].max(), val[2].max())) + 1
    print(f"{len(train[2])} train / {len(val[2])} val objects on {len(train[0])} / {len(val[0])} canvases ({args.coco})\n")
    print("| backbone | " + " | ".join(f"RoI probe top-1, block {b}" for b in blocks) + " | "
          + " | ".join(f"position share, block {b}" for b in blocks) + " |")
    print("|---" * (1 + 2 * len(blocks)) + "|")
    for name in args.backbones.split(","):
        entry = registry.entry(name)
        canvas = canvas_size(config.load("coco", arch=entry.arch, flags={"neck": "vit-fpn"}))
        torch.manual_seed(0)                      # a scratch backbone's random init
        vit, entry = registry.load(name, img_size=canvas)
        vit.eval()
        side = train[0].shape[-1]
        tr_maps = block_maps(vit, train[0], entry.mean, entry.std, blocks)
        va_maps = block_maps(vit, val[0], entry.mean, entry.std, blocks)
        probe = [linear_probe(roi_features(t, train[1], side), train[2], roi_features(v, val[1], side), val[2],
                              num_classes) for t, v in zip(tr_maps, va_maps)]
        share = [position_share(v) for v in va_maps]
        print(f"| {name} | " + " | ".join(f"{p:.1f}" for p in probe) + " | " + " | ".join(f"{s:.2f}" for s in share)
              + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
