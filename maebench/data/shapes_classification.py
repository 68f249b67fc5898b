"""The generated ImageFolder set: one coloured shape per image on a noisy, smooth-coloured
background, with random position, size, rotation and colours, so a classifier has to learn
shape rather than colour or location."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maebench.data import draw
from maebench.data.output import save_png, write_meta

SPLIT_CODES = {"train": 0, "val": 1}


def render(seed: int, split: str, cls: int, index: int, shape: str, size: int) -> np.ndarray:
    """One image, uint8 [size, size, 3]; a pure function of its arguments."""
    rng = np.random.default_rng([seed, 1, SPLIT_CODES[split], cls, index])
    img = draw.smooth_field(rng, size, size, grid=int(rng.integers(2, 5)))
    r = float(rng.uniform(0.2, 0.38)) * size
    margin = 0.8 * r
    cx, cy = rng.uniform(margin, size - margin, size=2)
    angle = float(rng.uniform(0, 2 * np.pi))
    colour = draw.distinct_colour(rng, img.mean(axis=(0, 1)))
    alpha = draw.coverage(draw.shape_polygons(shape, float(cx), float(cy), r, angle), size, size)
    draw.paint(img, alpha, colour)
    return draw.add_noise(rng, img, sigma=float(rng.uniform(4, 16)))


def write(root: Path, seed: int, size: int, classes: int, train_per_class: int, val_per_class: int) -> dict:
    """Write root/{train,val}/<shape>/<shape>_NNNNN.png and root/meta.json; return the meta."""
    names = list(draw.SHAPES[:classes])
    counts = {"train": train_per_class, "val": val_per_class}
    for split, n in counts.items():
        for c, name in enumerate(names):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                save_png(d / f"{name}_{i:05d}.png", render(seed, split, c, i, name, size))
    meta = {"dataset": "shapes", "kind": "classification", "format": "imagefolder", "seed": seed,
            "img_size": size, "classes": names, "num_classes": len(names),
            "train_per_class": train_per_class, "val_per_class": val_per_class}
    write_meta(root, meta)
    (root / "README.txt").write_text(
        "maebench generated shapes benchmark: classification (ImageFolder layout)\n"
        "train/<class>/*.png and val/<class>/*.png; one shape per image.\n"
        "Regenerate with: maebench data prepare shapes (options in meta.json)\n")
    return meta
