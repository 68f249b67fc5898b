"""COCO segmentation -> binary mask via pycocotools, without torch."""
from __future__ import annotations

import warnings

import numpy as np


def rle_from_segmentation(segmentation, height: int, width: int) -> dict:
    """One pycocotools RLE (bytes counts) for a polygon list, compressed or uncompressed RLE.
    Polygon parts with fewer than 3 points are dropped first (pycocotools would read a 2-point
    part as a box); None when no part is left."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        parts = [p for p in segmentation if len(p) >= 6]
        return mask_utils.merge(mask_utils.frPyObjects(parts, height, width)) if parts else None
    counts = segmentation["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": list(segmentation["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(rle: dict) -> np.ndarray:
    """uint8 [h, w]; pycocotools' numpy-2 DeprecationWarning (harmless) is silenced here."""
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(np.uint8)


def decode_mask(segmentation, height: int, width: int) -> np.ndarray:
    """uint8 [height, width] mask of any COCO segmentation; empty for a degenerate polygon."""
    rle = rle_from_segmentation(segmentation, height, width)
    if rle is None:
        return np.zeros((height, width), dtype=np.uint8)
    return decode_rle(rle)
