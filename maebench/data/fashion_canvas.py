"""Canvases of real Fashion-MNIST items for the "fashion" world's COCO and ADE20K-layout sets.

A canvas is a dark, smoothly varying background with 2-5 Fashion-MNIST items pasted at random
positions and scales. Later items cover earlier ones; an item's instance mask is the part of its
own pixels (its silhouette: value >= ITEM_THRESHOLD after resizing, holes filled) that stays visible, its box comes from that
mask, and the semantic label map is the same ownership map with 0 for the background. A new item
is accepted only if it leaves every earlier item at least MIN_VISIBLE of its own area, so no
annotation is a sliver. Every canvas is a pure function of (seed, split, index, the item arrays).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maebench.data.output import save_jpeg, save_png, write_json

CLASSES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
# class index -> COCO category id: non-contiguous, as COCO's 1..90 with gaps.
CATEGORY_IDS = (1, 3, 4, 7, 9, 15, 18, 27, 31, 44)
SPLITS = {  # split -> (rng code, IDX split the items come from, first image id, first annotation id)
    "train": (0, "train", 200_000, 700_001),
    "val": (1, "t10k", 600_000, 980_001),
}
ITEM_THRESHOLD = 24    # item pixels at or above this (0..255) are the item; below: its black surround
MIN_VISIBLE = 0.5      # fraction of an item's own pixels that must stay visible
MIN_AREA = 16          # px; smaller items are not pasted


def _resize(item: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR))


def silhouette(pix: np.ndarray) -> np.ndarray:
    """The item's own pixels: everything but the below-threshold surround connected to the border
    (dark pixels inside the garment, such as a pattern, belong to it)."""
    low = pix < ITEM_THRESHOLD
    outside = np.zeros_like(low)
    outside[[0, -1], :] = low[[0, -1], :]
    outside[:, [0, -1]] |= low[:, [0, -1]]
    while True:
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= low
        if np.array_equal(grown, outside):
            return ~outside
        outside = grown


def _background(rng, size: int) -> np.ndarray:
    """A dark smooth field (0..60) from a coarse random grid, bilinearly upsampled, plus noise."""
    from PIL import Image

    grid = rng.uniform(0, 60, size=(4, 4)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BILINEAR))
    return field + rng.normal(0, 3, size=(size, size)).astype(np.float32)


def render(seed: int, split: str, index: int, size: int, items: np.ndarray, labels: np.ndarray,
           scale: tuple[int, int] = (20, 40), per_canvas: tuple[int, int] = (2, 5)):
    """(grey uint8 [size, size], owner int16 [size, size] (-1 = background), [(class, item index)]):
    owner[y, x] = k means pixel (y, x) shows the k-th pasted item."""
    rng = np.random.default_rng([seed, 13, SPLITS[split][0], index])
    img = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int16)
    full_area: list[int] = []
    placed: list[tuple[int, int]] = []
    for _ in range(int(rng.integers(per_canvas[0], per_canvas[1] + 1))):
        for _try in range(10):
            src = int(rng.integers(0, len(items)))
            side = int(rng.integers(scale[0], min(scale[1], size) + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            pix = _resize(items[src], side)
            mask = silhouette(pix)
            if mask.sum() < MIN_AREA:
                continue
            trial = owner.copy()
            trial[y0:y0 + side, x0:x0 + side][mask] = len(placed)
            visible = np.bincount(trial[trial >= 0].ravel(), minlength=len(placed) + 1)
            if all(visible[k] >= MIN_VISIBLE * full_area[k] for k in range(len(placed))):
                owner = trial
                img[y0:y0 + side, x0:x0 + side][mask] = pix[mask]
                full_area.append(int(mask.sum()))
                placed.append((int(labels[src]), src))
                break
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), owner, placed


def outline_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons along the pixel edges of `mask`, one closed loop per boundary; None when
    pycocotools does not rasterise them back to exactly `mask` (holes, regions touching only at a
    corner): such an instance is stored as RLE instead."""
    from maebench.data.masks import decode_mask

    m = np.pad(mask.astype(bool), 1)
    h, w = mask.shape
    nxt: dict[tuple[int, int], list[tuple[int, int]]] = {}
    ys, xs = np.nonzero(m)
    for y, x in zip(ys.tolist(), xs.tolist()):
        px, py = x - 1, y - 1  # pixel corner coordinates in the unpadded mask
        if not m[y - 1, x]:
            nxt.setdefault((px, py), []).append((px + 1, py))
        if not m[y, x + 1]:
            nxt.setdefault((px + 1, py), []).append((px + 1, py + 1))
        if not m[y + 1, x]:
            nxt.setdefault((px + 1, py + 1), []).append((px, py + 1))
        if not m[y, x - 1]:
            nxt.setdefault((px, py + 1), []).append((px, py))
    polygons = []
    while nxt:
        start = min(nxt)
        loop, point = [start], start
        while True:
            ends = nxt[point]
            end = ends.pop()
            if not ends:
                del nxt[point]
            if end == start:
                break
            loop.append(end)
            point = end
        corners = [p for i, p in enumerate(loop)  # drop points in the middle of a straight run
                   if (loop[i - 1][0] - p[0]) * (loop[(i + 1) % len(loop)][1] - p[1])
                   != (loop[i - 1][1] - p[1]) * (loop[(i + 1) % len(loop)][0] - p[0])]
        polygons.append([float(v) for p in corners for v in p])
    if not polygons or not np.array_equal(decode_mask(polygons, h, w).astype(bool), mask.astype(bool)):
        return None
    return polygons


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": [int(v) for v in rle["size"]]}


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def write_coco_split(root: Path, seed: int, split: str, n_images: int, size: int, items, labels) -> dict:
    """root/<split>/*.jpg and root/annotations/instances_<split>.json (polygons where an outline
    rasterises back exactly, compressed RLE for the rest; every 5th polygon-able instance is also
    stored as RLE, so both encodings are always present)."""
    _, source, first_image_id, ann_id = SPLITS[split]
    (root / split).mkdir(parents=True)
    images, annotations = [], []
    for i in range(n_images):
        image_id = first_image_id + 3 * i + (i % 2)  # non-sequential, as in COCO
        file_name = f"{image_id:012d}.jpg"
        grey, owner, placed = render(seed, split, i, size, items, labels)
        save_jpeg(root / split / file_name, np.repeat(grey[..., None], 3, axis=2))
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        for k, (cls, src) in enumerate(placed):
            mask = owner == k
            polys = outline_polygons(mask) if ann_id % 5 else None
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[cls],
                                "segmentation": polys if polys is not None else _rle(mask),
                                "area": float(mask.sum()), "bbox": _bbox(mask), "iscrowd": 0,
                                "item": f"{source}:{src:05d}"})
            ann_id += 1 + (ann_id % 3)  # gaps in annotation ids
    categories = [{"id": c, "name": n, "supercategory": "fashion"} for c, n in zip(CATEGORY_IDS, CLASSES)]
    write_json(root / "annotations" / f"instances_{split}.json",
               {"info": {"description": "maebench fashion world: Fashion-MNIST items on canvases (COCO "
                                         "instances format)", "version": "1"},
                "licenses": [], "images": images, "annotations": annotations, "categories": categories})
    return {"images": len(images), "annotations": len(annotations),
            "polygons": sum(isinstance(a["segmentation"], list) for a in annotations)}


def write_ade_split(root: Path, seed: int, split: str, n_images: int, size: int, items, labels) -> dict:
    """root/images/<folder>/*.jpg and root/annotations/<folder>/*.png: label 0 = background,
    1..10 = the Fashion-MNIST classes (read with reduce_zero_label: 0 is ignored)."""
    folder, prefix = {"train": ("training", "ADE_train"), "val": ("validation", "ADE_val")}[split]
    (root / "images" / folder).mkdir(parents=True)
    (root / "annotations" / folder).mkdir(parents=True)
    counts = np.zeros(len(CLASSES) + 1, dtype=np.int64)
    for i in range(n_images):
        grey, owner, placed = render(seed, split, i, size, items, labels)
        lut = np.array([0] + [cls + 1 for cls, _ in placed], dtype=np.uint8)
        label = lut[owner.astype(np.int64) + 1]
        stem = f"{prefix}_{i + 1:08d}"
        save_jpeg(root / "images" / folder / f"{stem}.jpg", np.repeat(grey[..., None], 3, axis=2))
        save_png(root / "annotations" / folder / f"{stem}.png", label)
        counts += np.bincount(label.ravel(), minlength=len(CLASSES) + 1)
    return {"images": n_images, "pixels_per_label": counts.tolist()}
