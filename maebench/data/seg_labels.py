"""Semantic-segmentation label values, without torch: the mapping used for training and the
checks shared by the reader and `maebench data check`."""
from __future__ import annotations

import numpy as np

from maebench.errors import MaebenchError


def map_label(raw: np.ndarray, num_classes: int, ignore_index: int = 255, reduce_zero_label: bool = True,
              name: str = "label map") -> np.ndarray:
    """Stored values -> int64 training labels [H, W] in 0..num_classes-1 or ignore_index.

    reduce_zero_label (ADE20K): 0 ("other") -> ignore_index, v -> v - 1; a stored ignore_index
    stays ignored. A value that is neither a class nor ignored is an error naming `name`."""
    raw = np.asarray(raw).astype(np.int64)
    if reduce_zero_label:
        label = raw - 1
        label[(raw == 0) | (raw == ignore_index)] = ignore_index
    else:
        label = raw.copy()
    bad = (label != ignore_index) & ((label < 0) | (label >= num_classes))
    if bad.any():
        raise MaebenchError(f"{name}: label value {int(raw[bad].max())} is out of range for {num_classes} classes "
                            f"(reduce_zero_label={reduce_zero_label}, ignore_index={ignore_index})")
    return label


def size_problem(image_size: tuple[int, int], image_path, label_path, raw: np.ndarray) -> str | None:
    """Why a label map does not fit its image (image_size is PIL's (width, height)), or None."""
    w, h = image_size
    if raw.shape != (h, w):
        return f"label map {label_path} is {raw.shape[1]}x{raw.shape[0]} but its image {image_path} is {w}x{h}"
    return None
