"""Datasets: generators (`shapes`, `fashion_mnist`), readers (`imagefolder`, `coco`, `ade20k`),
transforms and `check`. This package imports no torch; the reader modules do."""
from __future__ import annotations

from pathlib import Path

KINDS = ("classification", "coco", "ade20k")


# Directory names that stand for the paper's datasets (the leaderboard compares only these with it).
_CANONICAL = {"ADEChallengeData2016": "ade20k"}


def dataset_name(root: str | Path | None) -> str:
    """The short dataset name stored with a result row: `meta.json`'s `dataset` for sets that
    maebench wrote (shapes, fashion-mnist: never mistaken for COCO or ADE20K because of a folder
    name), else the directory's name; None is the embedded default, `shapes`."""
    import json

    if root is None:
        return "shapes"
    root = Path(root).expanduser().resolve()
    meta = root / "meta.json"
    if meta.is_file():
        try:
            name = json.loads(meta.read_text()).get("dataset")
            if isinstance(name, str) and name:
                return name
        except (OSError, ValueError):
            pass
    return _CANONICAL.get(root.name, root.name)


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
