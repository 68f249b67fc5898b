"""Finding the files of each dataset layout on disk, without torch: shared by the readers
(which train on them) and by `maebench data check` (which must answer without a 10 s import)."""
from __future__ import annotations

import os
from pathlib import Path

from maebench.data.files import IMG_EXTENSIONS, is_image_file, require_dir
from maebench.errors import MaebenchError

ADE_SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}
COCO_SPLIT_NAMES = {  # layout name -> (train json, val json, train images, val images)
    "coco2017": ("annotations/instances_train2017.json", "annotations/instances_val2017.json", "train2017", "val2017"),
    "embedded": ("annotations/instances_train.json", "annotations/instances_val.json", "train", "val"),
}


def class_dirs(split_dir: Path) -> list[str]:
    """Sorted names of the class sub-directories (hidden ones skipped)."""
    with os.scandir(split_dir) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name (recursion would hide misplaced files)."""
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it if e.is_file() and is_image_file(e.name))


def scan_imagefolder(root: str | os.PathLike, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(classes, samples) of root/split/<class>/*.

    Labels come from root/train's classes when it exists, so `val` gets the same label for the
    same class even if some class folder is missing from it; a class in `split` that train lacks
    is an error rather than a silent label shift."""
    root = require_dir(root, "dataset directory")
    split_dir = require_dir(root / split, f"'{split}' split directory")
    classes = class_dirs(split_dir)
    if split != "train" and (root / "train").is_dir():
        train_classes = class_dirs(root / "train")
        extra = sorted(set(classes) - set(train_classes))
        if extra:
            raise MaebenchError(f"{split_dir}: class folder(s) {', '.join(extra)} are not in {root / 'train'}")
        classes = train_classes
    if not classes:
        raise MaebenchError(f"no class folders in {split_dir} (expected {split_dir}/<class>/<image>)")
    samples = []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if folder.is_dir():
            samples += [(str(p), label) for p in list_images(folder)]
    if not samples:
        raise MaebenchError(f"no images ({', '.join(IMG_EXTENSIONS)}) in the class folders of {split_dir}")
    return classes, samples


def resolve_coco(dir: str | os.PathLike) -> dict[str, str]:
    """Paths of a COCO instances directory: the 2017 layout (annotations/instances_train2017.json,
    train2017/, ...) or the embedded one (annotations/instances_train.json, train/, ...)."""
    root = require_dir(dir, "COCO directory")
    for train_json, val_json, train_images, val_images in COCO_SPLIT_NAMES.values():
        if (root / val_json).is_file() or (root / train_json).is_file():
            paths = {"train_json": root / train_json, "val_json": root / val_json,
                     "train_images": root / train_images, "val_images": root / val_images}
            for key, p in paths.items():
                if not p.exists():
                    raise MaebenchError(f"COCO directory {root} is missing {p.relative_to(root)}")
            return {k: str(v) for k, v in paths.items()}
    raise MaebenchError(f"not a COCO instances directory: {root} (expected annotations/instances_{{train,val}}2017.json "
                        "with train2017/ and val2017/, or annotations/instances_{train,val}.json with train/ and val/)")


def resolve_ade20k(dir: str | os.PathLike, split: str) -> tuple[str, str]:
    """(images_dir, labels_dir) of an ADE20K-layout directory for split training|validation
    (train|val accepted); a directory holding ADEChallengeData2016/ is accepted too."""
    if split not in ADE_SPLITS:
        from maebench.errors import unknown
        raise unknown("ADE20K split", split, ADE_SPLITS)
    root = require_dir(dir, "ADE20K directory")
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    folder = ADE_SPLITS[split]
    images = require_dir(root / "images" / folder, "ADE20K images directory")
    labels = require_dir(root / "annotations" / folder, "ADE20K annotations directory")
    return str(images), str(labels)


def segmentation_pairs(images_dir: str | os.PathLike, labels_dir: str | os.PathLike) -> tuple[list[tuple[str, str]], list[str]]:
    """([(image, label)] sorted by stem, [problems]): images and .png labels matched by stem."""
    images_dir = require_dir(images_dir, "images directory")
    labels_dir = require_dir(labels_dir, "labels directory")
    images = {p.stem: p for p in list_images(images_dir)}
    labels = {p.stem: p for p in list_images(labels_dir) if p.suffix.lower() == ".png"}
    problems = [f"image {images[s]} has no label map {labels_dir / (s + '.png')}" for s in sorted(set(images) - set(labels))]
    problems += [f"label map {labels[s]} has no image in {images_dir}" for s in sorted(set(labels) - set(images))]
    pairs = [(str(images[s]), str(labels[s])) for s in sorted(set(images) & set(labels))]
    return pairs, problems
