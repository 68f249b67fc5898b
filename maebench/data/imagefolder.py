"""ImageFolder reader (ImageNet layout: root/<split>/<class>/<image>) and seeded, stratified
label subsets for low-label transfer."""
from __future__ import annotations

import copy
import os
import random
from collections import defaultdict
from collections.abc import Sequence

from torch.utils.data import Dataset

from maebench.data.files import load_rgb
from maebench.data.layout import scan_imagefolder
from maebench.errors import MaebenchError

__all__ = ["ImageFolder", "stratified_subset"]


class ImageFolder(Dataset):
    """(transform(PIL RGB image) or the image, label) for root/split/<class>/*.{jpg,jpeg,png,bmp,webp}.

    classes: sorted class-folder names (taken from root/train when it exists, so every split
    shares one label map); samples: [(path, label)] sorted by class then file name."""

    def __init__(self, root: str | os.PathLike, split: str = "train", transform=None):
        self.root, self.split, self.transform = str(root), split, transform
        self.classes, self.samples = scan_imagefolder(root, split)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = load_rgb(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def subset(self, indices: Sequence[int]) -> "ImageFolder":
        """A copy holding only samples[indices], with the same classes and labels."""
        view = copy.copy(self)
        view.samples = [self.samples[i] for i in indices]
        view.targets = [label for _, label in view.samples]
        return view


def stratified_subset(targets: Sequence[int], labels_per_class: int | None = None,
                      fraction: float | None = None, seed: int = 0) -> list[int]:
    """Sorted indices keeping `labels_per_class` samples (or `fraction` of them, at least one)
    of every class, chosen at random with `seed`.

    Each class is shuffled by its own generator seeded with (seed, class), so a class's choice
    does not depend on the other classes, and for one seed a smaller subset is contained in a
    larger one: low-label curves compare nested label sets."""
    if (labels_per_class is None) == (fraction is None):
        raise MaebenchError("stratified_subset: give exactly one of labels_per_class or fraction")
    if labels_per_class is not None and labels_per_class < 1:
        raise MaebenchError(f"labels_per_class must be at least 1, got {labels_per_class}")
    if fraction is not None and not 0 < fraction <= 1:
        raise MaebenchError(f"fraction must be in (0, 1], got {fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        by_class[int(t)].append(i)
    chosen = []
    for label in sorted(by_class):
        members = by_class[label]
        k = labels_per_class if labels_per_class is not None else max(1, round(fraction * len(members)))
        if k > len(members):
            raise MaebenchError(f"class {label} has {len(members)} samples, fewer than labels_per_class={k}")
        order = list(members)
        random.Random(f"{seed}/{label}").shuffle(order)
        chosen += order[:k]
    return sorted(chosen)
