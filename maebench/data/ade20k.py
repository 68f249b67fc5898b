"""ADE20K-layout semantic segmentation reader: (image, label map) pairs matched by file stem.

ADE20K stores 0 for "other" and 1..150 for classes; with reduce_zero_label (mmseg's
convention, used by every MAE/BEiT ADE20K result) 0 becomes ignore_index and v becomes v - 1,
so the model predicts classes 0..K-1."""
from __future__ import annotations

import os

from torch.utils.data import Dataset

from maebench.data.files import load_label, load_rgb
from maebench.data.layout import resolve_ade20k, segmentation_pairs
from maebench.data.seg_labels import map_label, size_problem
from maebench.errors import MaebenchError

__all__ = ["SegmentationPairs", "resolve_ade20k", "map_label"]


class SegmentationPairs(Dataset):
    """(PIL RGB image, int64 label [H, W]) per stem, or transforms(image, label) when given."""

    def __init__(self, images_dir: str | os.PathLike, labels_dir: str | os.PathLike, num_classes: int,
                 ignore_index: int = 255, reduce_zero_label: bool = True, transforms=None):
        self.pairs, problems = segmentation_pairs(images_dir, labels_dir)
        if problems:
            more = f" (and {len(problems) - 1} more unmatched files)" if len(problems) > 1 else ""
            raise MaebenchError(problems[0] + more)
        if not self.pairs:
            raise MaebenchError(f"no image/label pairs in {images_dir} and {labels_dir}")
        self.images_dir, self.labels_dir = str(images_dir), str(labels_dir)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reduce_zero_label = bool(reduce_zero_label)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        image_path, label_path = self.pairs[index]
        image = load_rgb(image_path)
        raw = load_label(label_path)
        mismatch = size_problem(image.size, image_path, label_path, raw)
        if mismatch:
            raise MaebenchError(mismatch)
        label = map_label(raw, self.num_classes, self.ignore_index, self.reduce_zero_label, name=label_path)
        if self.transforms is not None:
            return self.transforms(image, label)
        return image, label
