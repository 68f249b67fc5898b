"""The generated ADE20K-layout semantic set: a sky gradient over a textured ground with a wavy
horizon, foreground shapes, and unlabelled clutter (label 0, "other", ignored in training and
evaluation exactly as ADE20K's 0 is)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maebench.data import draw
from maebench.data.output import save_jpeg, save_png, write_meta

# label value -> class name; 0 is "other" (ignored: reduce_zero_label maps it to 255).
CLASSES = ("sky", "ground", "circle", "square", "triangle", "ring", "cross", "star")
SPLITS = {"train": ("training", "ADE_train", 0), "val": ("validation", "ADE_val", 1)}


def render(seed: int, split: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [size, size, 3], label uint8 [size, size] with values 0..len(CLASSES))."""
    rng = np.random.default_rng([seed, 3, SPLITS[split][2], index])
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    horizon = (rng.uniform(0.35, 0.65) * size
               + rng.uniform(0, 0.08) * size * np.sin(xs[0] * rng.uniform(0.05, 0.3) + rng.uniform(0, 6.3)))
    band = float(rng.uniform(0.5, 2.5))  # an unlabelled strip along the horizon

    top = np.array([rng.uniform(20, 90), rng.uniform(60, 150), rng.uniform(170, 255)], np.float32)
    bottom = np.array([rng.uniform(150, 230), rng.uniform(170, 240), rng.uniform(200, 255)], np.float32)
    t = (ys / size)[..., None]
    img = top * (1 - t) + bottom * t
    ground = draw.smooth_field(rng, size, size, grid=8, low=40, high=170)
    ground *= np.array([1.0, 0.85, 0.55], np.float32)  # earthy tint
    below = ys >= horizon[None, :]
    img[below] = ground[below]
    label = np.where(ys < horizon[None, :] - band, 1, 0).astype(np.uint8)
    label[ys > horizon[None, :] + band] = 2
    img[~below & (label == 0)] = img[~below & (label == 0)] * 0.5 + 60  # haze in the strip

    if rng.random() < 0.5:  # unlabelled clutter
        x0, y0 = rng.integers(0, size - size // 6, size=2)
        w, h = rng.integers(size // 10, size // 4, size=2)
        img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, size=3)
        label[y0:y0 + h, x0:x0 + w] = 0

    for _ in range(int(rng.integers(1, 5))):
        value = int(rng.integers(3, len(CLASSES) + 1))
        r = float(rng.uniform(0.08, 0.25)) * size
        cx, cy = rng.uniform(0, size, size=2)
        alpha = draw.coverage(draw.shape_polygons(CLASSES[value - 1], float(cx), float(cy), r,
                                                  float(rng.uniform(0, 2 * np.pi))), size, size)
        colour = draw.distinct_colour(rng, img.mean(axis=(0, 1)), min_dist=70)
        draw.paint(img, alpha, colour)
        label[alpha >= 0.5] = value

    return draw.add_noise(rng, img, sigma=5.0), label


def write(root: Path, seed: int, size: int, train_images: int, val_images: int) -> dict:
    """Write root/images/{training,validation}/*.jpg, root/annotations/.../*.png, root/meta.json."""
    for split, n in (("train", train_images), ("val", val_images)):
        folder, prefix, _ = SPLITS[split]
        images, labels = root / "images" / folder, root / "annotations" / folder
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for i in range(n):
            pixels, label = render(seed, split, i, size)
            stem = f"{prefix}_{i + 1:08d}"
            save_jpeg(images / f"{stem}.jpg", pixels)
            save_png(labels / f"{stem}.png", label)
    meta = {"dataset": "shapes", "kind": "ade20k", "format": "ade20k", "seed": seed, "img_size": size,
            "classes": list(CLASSES), "num_classes": len(CLASSES), "reduce_zero_label": True,
            "ignore_index": 255, "train_images": train_images, "val_images": val_images}
    write_meta(root, meta)
    (root / "README.txt").write_text(
        "maebench generated shapes benchmark: ADE20K layout semantic segmentation\n"
        "images/{training,validation}/*.jpg and annotations/{training,validation}/*.png (uint8 'L').\n"
        f"Label 0 = other (ignored); 1..{len(CLASSES)} = {', '.join(CLASSES)}.\n"
        "Read with reduce_zero_label=True (0 -> 255, v -> v - 1).\n"
        "Regenerate with: maebench data prepare shapes (options in meta.json)\n")
    return meta
