"""The generated COCO instance set, made to exercise everything a real COCO file throws at a
reader: non-contiguous category ids, polygon, compressed-RLE and uncompressed-RLE (crowd)
segmentations, images without annotations, and non-sequential image and annotation ids.

Objects never overlap, so each annotation's mask is exactly its visible pixels; areas and boxes
are computed by pycocotools from the very RLE stored, so they agree with any evaluator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maebench.data import draw
from maebench.data.masks import decode_mask, rle_from_segmentation
from maebench.data.output import save_jpeg, write_json, write_meta

# category id -> shape; ids deliberately non-contiguous, as in COCO (1..90 with gaps).
CATEGORIES = {3: "circle", 7: "square", 12: "triangle", 40: "ring"}
RLE_ONLY = {"ring"}  # a shape with a hole cannot be one COCO polygon
SPLITS = {"train": (0, 100_000, 900_001), "val": (1, 500_000, 950_001)}  # code, first image id, first ann id


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a binary mask [h, w]: run lengths in column-major order,
    starting with a (possibly empty) run of zeros, as used by COCO's iscrowd regions."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return {"counts": runs, "size": list(mask.shape)}


def _compressed_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": [int(v) for v in rle["size"]]}


def _polygon_mask(poly: list[float], h: int, w: int) -> np.ndarray:
    return decode_mask([poly], h, w).astype(bool)


def _area_bbox(segmentation, h: int, w: int) -> tuple[float, list[float]]:
    from pycocotools import mask as mask_utils

    rle = rle_from_segmentation(segmentation, h, w)
    return float(mask_utils.area(rle)), [float(v) for v in mask_utils.toBbox(rle)]


def _place(rng, occupied: np.ndarray, make, tries: int = 25):
    """Sample (mask, extra) from make(rng) until its mask, grown by 1 px, misses `occupied`."""
    for _ in range(tries):
        mask, extra = make(rng)
        if not mask.any():
            continue
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        if not (grown & occupied).any():
            occupied |= mask
            return mask, extra
    return None


def render(seed: int, split: str, index: int, size: int):
    """One image: (uint8 [size, size, 3], [(category_id, segmentation, iscrowd)])."""
    rng = np.random.default_rng([seed, 2, SPLITS[split][0], index])
    img = draw.smooth_field(rng, size, size, grid=int(rng.integers(3, 7)))
    occupied = np.zeros((size, size), dtype=bool)
    objects = []
    n_objects = 0 if index % 8 == 3 else int(rng.integers(1, 6))
    cat_ids = sorted(CATEGORIES)

    for _ in range(n_objects):
        cat = int(rng.choice(cat_ids))
        shape = CATEGORIES[cat]
        as_polygon = shape not in RLE_ONLY and rng.random() < 0.7

        def make(rng, shape=shape, as_polygon=as_polygon):
            r = float(rng.uniform(0.06, 0.22)) * size
            cx, cy = rng.uniform(0.6 * r, size - 0.6 * r, size=2)
            polys = draw.shape_polygons(shape, float(cx), float(cy), r, float(rng.uniform(0, 2 * np.pi)))
            if as_polygon:
                flat = [round(v, 2) for x, y in polys[0][0] for v in (x, y)]
                return _polygon_mask(flat, size, size), [flat]
            mask = draw.coverage(polys, size, size) >= 0.5
            return mask, None

        placed = _place(rng, occupied, make)
        if placed is None:
            continue
        mask, seg = placed
        draw.paint(img, mask.astype(np.float32), draw.distinct_colour(rng, img[mask].mean(axis=0)))
        objects.append((cat, seg if seg is not None else _compressed_rle(mask), 0))

    if n_objects and rng.random() < 0.25:  # a crowd: a cluster of small shapes, one RLE region
        cat = int(rng.choice(cat_ids))

        def make_crowd(rng, shape=CATEGORIES[cat]):
            x0, y0 = rng.uniform(0, size - 0.25 * size, size=2)
            polys = []
            for _ in range(int(rng.integers(4, 8))):
                cx, cy = x0 + rng.uniform(0, 0.25 * size, size=2)
                polys += draw.shape_polygons(shape, float(cx), float(cy), float(rng.uniform(0.02, 0.035)) * size,
                                             float(rng.uniform(0, 2 * np.pi)))
            return draw.coverage(polys, size, size) >= 0.5, None

        placed = _place(rng, occupied, make_crowd)
        if placed is not None:
            mask = placed[0]
            draw.paint(img, mask.astype(np.float32), draw.distinct_colour(rng, img[mask].mean(axis=0)))
            objects.append((cat, uncompressed_rle(mask), 1))

    return draw.add_noise(rng, img, sigma=6.0), objects


def write_split(root: Path, seed: int, split: str, n_images: int, size: int) -> dict:
    code, first_image_id, ann_id = SPLITS[split]
    (root / split).mkdir(parents=True)
    images, annotations = [], []
    for i in range(n_images):
        image_id = first_image_id + 7 * i + (i % 3)  # non-sequential, as in COCO
        file_name = f"{image_id:012d}.jpg"
        pixels, objects = render(seed, split, i, size)
        save_jpeg(root / split / file_name, pixels)
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        for cat, seg, crowd in objects:
            area, bbox = _area_bbox(seg, size, size)
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": cat, "segmentation": seg,
                                "area": area, "bbox": bbox, "iscrowd": crowd})
            ann_id += 1 + (ann_id % 4)  # gaps in annotation ids
    categories = [{"id": c, "name": n, "supercategory": "shape"} for c, n in sorted(CATEGORIES.items())]
    data = {"info": {"description": "maebench generated shapes (COCO instances format)", "version": "1"},
            "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    write_json(root / "annotations" / f"instances_{split}.json", data)
    return {"images": len(images), "annotations": len(annotations),
            "crowd": sum(a["iscrowd"] for a in annotations),
            "images_without_annotations": len(images) - len({a["image_id"] for a in annotations})}


def write(root: Path, seed: int, size: int, train_images: int, val_images: int) -> dict:
    """Write root/annotations/instances_{train,val}.json, root/{train,val}/*.jpg, root/meta.json."""
    (root / "annotations").mkdir(parents=True)
    counts = {split: write_split(root, seed, split, n, size)
              for split, n in (("train", train_images), ("val", val_images))}
    meta = {"dataset": "shapes", "kind": "coco", "format": "coco-instances", "seed": seed, "img_size": size,
            "categories": {str(c): n for c, n in CATEGORIES.items()}, "num_classes": len(CATEGORIES),
            "train_images": train_images, "val_images": val_images, "counts": counts}
    write_meta(root, meta)
    (root / "README.txt").write_text(
        "maebench generated shapes benchmark: COCO instance segmentation format\n"
        "annotations/instances_{train,val}.json with train/*.jpg and val/*.jpg.\n"
        "Category ids are non-contiguous; segmentations are polygons, compressed RLE and\n"
        "uncompressed RLE (iscrowd=1); some images have no annotations.\n"
        "Regenerate with: maebench data prepare shapes (options in meta.json)\n")
    return meta
