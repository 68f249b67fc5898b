"""The held-out part of the training data that a search selects on (VTAB's rule: choose on
held-out training images, retrain the choice on all of them, score the reported split once).

Stratified by class for classification, by image for COCO and ADE20K; fixed by the seed, so
every trial of one search, and the search run again, hold out the same images. Nothing here
reads the reported split.
"""
from __future__ import annotations

from typing import Sequence

import torch

from maebench.errors import UsageError


def check_fraction(fraction: float, what: str = "the held-out fraction") -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number strictly between 0 and 1, got {fraction!r}") from None
    if not 0 < f < 1:
        raise UsageError(f"{what} must lie strictly between 0 and 1, got {fraction!r}")
    return f


def stratified(labels: torch.Tensor | Sequence[int], fraction: float, seed: int,
               classes: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit positions, held-out positions) into `labels`: per class, round(fraction x its count)
    images (at least one, at most all but one) drawn with a generator seeded by (seed, class).

    A class with a single labelled image cannot be in both parts: an error naming it and the
    count (the fraction would leave the fit or the held-out part without that class)."""
    fraction = check_fraction(fraction)
    labels = torch.as_tensor(labels)
    fit, held = [], []
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().flatten()
        if len(idx) < 2:
            name = classes[c] if classes is not None and 0 <= c < len(classes) else c
            raise UsageError(f"class '{name}' has {len(idx)} labelled image: a held-out fraction {fraction:g} "
                             "needs at least 2 per class (one to fit, one to hold out); label more images")
        g = torch.Generator().manual_seed(seed * 1_000_003 + int(c))
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        held.append(idx[:k])
        fit.append(idx[k:])
    if not held:
        raise UsageError("there is no labelled training image to hold out")
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


def by_image(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(fit positions, held-out positions) of n images: round(fraction x n) held out (at least
    one, at most n - 1), drawn with a generator seeded by the seed."""
    fraction = check_fraction(fraction)
    if n < 2:
        raise UsageError(f"the training split has {n} image(s): a held-out fraction {fraction:g} needs at least 2")
    k = min(max(1, round(fraction * n)), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + 7)).tolist()
    return sorted(order[k:]), sorted(order[:k])
