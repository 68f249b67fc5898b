"""`maebench data prepare coco`: COCO 2017's official zips (train2017.zip, val2017.zip,
annotations_trainval2017.zip) -> the COCO 2017 layout the coco task reads (train2017/,
val2017/, annotations/instances_{train,val}2017.json and the archive's other annotation files),
image bytes as they are in the zips. Each split's instances file is checked against its zip:
an image it lists that the zip lacks is an error (the coco reader would fail on it later)."""
from __future__ import annotations

from pathlib import Path

from maebench.data import coco_json
from maebench.data.archive_io import extract_zip, open_zip, zip_files
from maebench.data.archive_sources import shortfall
from maebench.data.output import write_meta
from maebench.data.staging import staged
from maebench.errors import MaebenchError

SPLITS = ("train", "val")


def _instances(split: str) -> str:
    return f"instances_{split}2017.json"


def prepare(archives: dict[str, Path], out: Path, force: bool = False, say=print) -> dict:
    """Write `out` from archives {'train', 'val', 'annotations'}: Path; return meta.json's content
    (with 'warning' when the set is partial)."""
    listed = {}
    for role in ("annotations", *SPLITS):   # read every central directory before writing anything
        top = "annotations" if role == "annotations" else f"{role}2017"
        with open_zip(archives[role]) as zf:
            listed[role] = zip_files(zf, archives[role], top)
    names = {str(rel) for _, rel in listed["annotations"]}
    for split in SPLITS:
        if _instances(split) not in names:
            raise MaebenchError(f"{archives['annotations']}: no annotations/{_instances(split)} "
                                "(not the COCO 2017 train/val annotations archive)")
    with staged(out, force, say) as tmp:
        for role, folder in (("annotations", "annotations"), ("val", "val2017"), ("train", "train2017")):
            with open_zip(archives[role]) as zf:
                extract_zip(zf, listed[role], tmp / folder, archives[role])
        counts = {split: len(listed[split]) for split in SPLITS}
        for split in SPLITS:
            _check_listed_images(tmp, split, archives, {str(rel) for _, rel in listed[split]})
        meta = {"dataset": "coco", "format": "coco-instances", "year": 2017, "counts": counts,
                "archives": {role: {"file": str(p), "digest": None} for role, p in archives.items()}}
        write_meta(tmp, meta)
    warning = shortfall("coco", counts)
    if warning:
        meta["warning"] = warning
    return meta


def _check_listed_images(root: Path, split: str, archives: dict[str, Path], in_zip: set[str]) -> None:
    ann_file = root / "annotations" / _instances(split)
    try:
        data = coco_json.read(ann_file)
    except MaebenchError as e:
        raise MaebenchError(f"{archives['annotations']}: annotations/{_instances(split)}: "
                            f"{str(e).replace(str(ann_file) + ': ', '')}") from None
    images = data.get("images")
    if not isinstance(images, list):
        raise MaebenchError(f"{archives['annotations']}: annotations/{_instances(split)} has no 'images' list")
    listed = {im.get("file_name") for im in images if isinstance(im, dict)}
    missing = sorted(str(n) for n in listed - in_zip)
    if missing:
        raise MaebenchError(f"{archives[split]}: lacks {len(missing)} of the {len(listed)} images that "
                            f"annotations/{_instances(split)} lists, e.g. {missing[0]}")
