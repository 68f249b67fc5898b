"""Numpy/PIL rasterisation of the generated benchmark's shapes and backgrounds.

Every shape is a list of polygons, each either added to or cut out of the shape, so one
description serves three uses: anti-aliased painting (classification, ADE20K), hard label maps
(ADE20K) and COCO polygon annotations. Only PIL and numpy: no torch, so generation is fast.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

Point = tuple[float, float]
SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "ring", "cross", "star", "hexagon", "crescent", "ellipse", "frame")


def _ngon(n: int, cx: float, cy: float, r: float, angle: float, ry: float | None = None) -> list[Point]:
    """Regular n-gon (or ellipse with semi-axes r, ry when ry is given), rotated by `angle`."""
    ry = r if ry is None else ry
    ca, sa = math.cos(angle), math.sin(angle)
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x, y = r * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return pts


def _star(cx: float, cy: float, r: float, angle: float) -> list[Point]:
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else 0.45 * r
        t = angle + math.pi * k / 5
        pts.append((cx + rad * math.cos(t), cy + rad * math.sin(t)))
    return pts


def _cross(cx: float, cy: float, r: float, angle: float) -> list[Point]:
    a = 0.32 * r  # arm half-width
    outline = [(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r), (-a, -r), (-a, -a), (-r, -a), (-r, a), (-a, a), (-a, r)]
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in outline]


def shape_polygons(name: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[list[Point], bool]]:
    """[(polygon, add)] in drawing order; add=False cuts a hole. r is the outer radius in px."""
    if name == "circle":
        return [(_ngon(48, cx, cy, r, angle), True)]
    if name == "ellipse":
        return [(_ngon(48, cx, cy, r, angle, ry=0.5 * r), True)]
    if name == "square":
        return [(_ngon(4, cx, cy, r, angle), True)]
    if name == "triangle":
        return [(_ngon(3, cx, cy, r, angle), True)]
    if name == "hexagon":
        return [(_ngon(6, cx, cy, r, angle), True)]
    if name == "star":
        return [(_star(cx, cy, r, angle), True)]
    if name == "cross":
        return [(_cross(cx, cy, r, angle), True)]
    if name == "ring":
        return [(_ngon(48, cx, cy, r, angle), True), (_ngon(48, cx, cy, 0.55 * r, angle), False)]
    if name == "frame":
        return [(_ngon(4, cx, cy, r, angle), True), (_ngon(4, cx, cy, 0.55 * r, angle), False)]
    if name == "crescent":
        ox, oy = cx + 0.55 * r * math.cos(angle), cy + 0.55 * r * math.sin(angle)
        return [(_ngon(48, cx, cy, r, angle), True), (_ngon(48, ox, oy, 0.85 * r, angle), False)]
    raise ValueError(f"unknown shape {name!r}")


def coverage(polygons: list[tuple[list[Point], bool]], h: int, w: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], float32 [h, w], by supersampled PIL rasterisation."""
    s = SUPERSAMPLE
    canvas = Image.new("L", (w * s, h * s), 0)
    draw = ImageDraw.Draw(canvas)
    for poly, add in polygons:
        draw.polygon([(x * s, y * s) for x, y in poly], fill=255 if add else 0)
    a = np.asarray(canvas, dtype=np.float32).reshape(h, s, w, s).mean(axis=(1, 3))
    return a / 255.0


def smooth_field(rng: np.random.Generator, h: int, w: int, grid: int = 4,
                 low: int = 0, high: int = 256) -> np.ndarray:
    """A smooth random colour field, float32 [h, w, 3]: a tiny random image upsampled."""
    small = rng.integers(low, high, size=(grid, grid, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    return np.asarray(big, dtype=np.float32)


def paint(img: np.ndarray, alpha: np.ndarray, colour) -> None:
    """img [h, w, 3] float32 in place: img = img * (1 - alpha) + colour * alpha."""
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * np.asarray(colour, dtype=np.float32)


def add_noise(rng: np.random.Generator, img: np.ndarray, sigma: float) -> np.ndarray:
    """Pixel noise and rounding to uint8 [h, w, 3]."""
    noisy = img + rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def distinct_colour(rng: np.random.Generator, against, min_dist: float = 90.0) -> np.ndarray:
    """A random RGB colour at least `min_dist` (L2) from `against`, so every shape is visible."""
    against = np.asarray(against, dtype=np.float32)
    best, best_d = None, -1.0
    for _ in range(20):
        c = rng.integers(0, 256, size=3).astype(np.float32)
        d = float(np.linalg.norm(c - against))
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best
