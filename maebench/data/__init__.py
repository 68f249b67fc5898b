"""Datasets: generators (`shapes`, `fashion_mnist`), readers (`imagefolder`, `coco`, `ade20k`),
transforms and `check`. This package imports no torch; the reader modules do."""
from __future__ import annotations

from pathlib import Path

KINDS = ("classification", "coco", "ade20k")


def default_dataset(kind: str) -> Path:
    """$MAEBENCH_HOME/data/shapes/<kind>, generated with default options when absent.

    Generation goes to a temporary directory renamed into place, so a crash never leaves a
    half-written set and concurrent callers both end up with one complete copy."""
    from maebench.data import shapes
    from maebench.data.output import META
    from maebench.errors import unknown
    from maebench.home import data_dir

    if kind not in KINDS:
        raise unknown("dataset kind", kind, KINDS)
    path = data_dir() / "shapes" / kind
    if not (path / META).is_file():
        shapes.prepare(path.parent, kinds=(kind,), replace=False)
    return path
