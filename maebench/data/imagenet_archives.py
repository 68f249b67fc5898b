"""`maebench data prepare imagenet`: ILSVRC2012's official archives -> the ImageFolder layout
(train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) that the classification tasks read, image bytes as
they are in the archives.

torchvision.datasets.imagenet does the same job with parse_devkit_archive, parse_train_archive
and parse_val_archive, but they do not fit here: each first checks the md5 of the whole
official archive (so a partial or test archive is refused, and 138 GB are read twice), they
extract into the final directory (a killed run leaves a half set where a reader would take it
for a whole one), the training tar is unpacked to disk before its per-class tars are (twice
the space), and validation images are labelled by sorted position, which mislabels any subset.
What is reused is their format: the devkit is read as parse_meta_mat reads it (the leaf synsets
of data/meta.mat, num_children == 0, give ILSVRC2012_ID -> WNID; validation ground truth is one
ILSVRC2012_ID per image, in image-number order), and torchvision's META_FILE (meta.bin) is
written, so torchvision.datasets.ImageNet(out) opens the prepared directory as it is.
"""
from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from maebench.data.archive_io import list_tar, stream_tar, write_member
from maebench.data.archive_sources import OFFICIAL, check_digest, is_complete, shortfall
from maebench.data.output import write_meta
from maebench.data.staging import staged
from maebench.errors import MaebenchError

TRAIN_TAR = re.compile(r"^(n\d{8})\.tar$")
TRAIN_IMAGE = re.compile(r"^(n\d{8})_\d+\.JPEG$")
VAL_IMAGE = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")
DEVKIT_DIR = "ILSVRC2012_devkit_t12/data/"
META_MAT, GROUND_TRUTH = "meta.mat", "ILSVRC2012_validation_ground_truth.txt"
TORCHVISION_META = "meta.bin"   # torchvision.datasets.imagenet.META_FILE
PROGRESS_EVERY = 100            # classes


@dataclass
class Devkit:
    idx_to_wnid: dict[int, str]
    wnid_to_classes: dict[str, tuple[str, ...]]
    val_wnids: list[str]        # the wnid of validation image i + 1
    digest: str | None


def read_devkit(path: Path) -> Devkit:
    wanted = {DEVKIT_DIR + META_MAT: None, DEVKIT_DIR + GROUND_TRUTH: None}

    def keep(member, f):
        if member.name in wanted and f is not None:
            wanted[member.name] = f.read()

    with open(path, "rb") as f:
        digest = stream_tar(f, str(path), keep, digest="md5", gz=True)
    for name, data in wanted.items():
        if data is None:
            raise MaebenchError(f"{path}: no {name} in the archive (not the ILSVRC2012 devkit)")
    idx_to_wnid, wnid_to_classes = _parse_meta_mat(wanted[DEVKIT_DIR + META_MAT], path)
    val_wnids = []
    for line_no, line in enumerate(wanted[DEVKIT_DIR + GROUND_TRUTH].decode("ascii", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            val_wnids.append(idx_to_wnid[int(line)])
        except (ValueError, KeyError):
            raise MaebenchError(f"{path}: {GROUND_TRUTH} line {line_no} is {line.strip()!r}, not one of the "
                                f"{len(idx_to_wnid)} class ids (ILSVRC2012_ID) of {META_MAT}") from None
    return Devkit(idx_to_wnid, wnid_to_classes, val_wnids, digest)


def _parse_meta_mat(data: bytes, path: Path) -> tuple[dict[int, str], dict[str, tuple[str, ...]]]:
    import scipy.io

    try:
        synsets = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
        leaves = [s for s in synsets.ravel() if int(s["num_children"]) == 0]
        idx_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves}
        wnid_to_classes = {str(s["WNID"]): tuple(str(s["words"]).split(", ")) for s in leaves}
    except (KeyError, ValueError, TypeError, IndexError, OSError) as e:
        raise MaebenchError(f"{path}: {DEVKIT_DIR}{META_MAT} is not the devkit's synset table ({e})") from None
    if not idx_to_wnid:
        raise MaebenchError(f"{path}: {DEVKIT_DIR}{META_MAT} lists no leaf synsets")
    return idx_to_wnid, wnid_to_classes


def scan_train(path: Path, devkit: Devkit, devkit_path: Path) -> list[str]:
    """The sorted class wnids of the training tar, from its headers only."""
    wnids = []
    for member in list_tar(path):
        m = TRAIN_TAR.match(member.name)
        if not m or not member.isfile():
            hint = (" (it holds validation images: is it ILSVRC2012_img_val.tar?)" if VAL_IMAGE.match(member.name)
                    else "")
            raise MaebenchError(f"{path}: member {member.name} is not a per-class tar nXXXXXXXX.tar{hint}")
        if m.group(1) not in devkit.wnid_to_classes:
            raise MaebenchError(f"{path}: class {m.group(1)} is not one of the classes of {devkit_path}")
        wnids.append(m.group(1))
    if not wnids:
        raise MaebenchError(f"{path}: no per-class tars in the archive")
    return sorted(wnids)


def scan_val(path: Path, devkit: Devkit, devkit_path: Path) -> dict[str, str]:
    """Validation image name -> wnid, from the tar's headers and the devkit's ground truth."""
    labels = {}
    for member in list_tar(path):
        m = VAL_IMAGE.match(member.name)
        if not m or not member.isfile():
            hint = " (it holds per-class tars: is it ILSVRC2012_img_train.tar?)" if TRAIN_TAR.match(member.name) else ""
            raise MaebenchError(f"{path}: member {member.name} is not a validation image "
                                f"ILSVRC2012_val_NNNNNNNN.JPEG{hint}")
        labels[member.name] = int(m.group(1))
    if len(labels) != len(devkit.val_wnids):
        raise MaebenchError(f"{devkit_path}: {GROUND_TRUTH} has {len(devkit.val_wnids)} labels but {path} holds "
                            f"{len(labels)} validation images")
    for name, number in labels.items():
        if not 1 <= number <= len(devkit.val_wnids):
            raise MaebenchError(f"{path}: {name} has no line in {devkit_path}'s {GROUND_TRUTH} "
                                f"({len(devkit.val_wnids)} lines)")
        labels[name] = devkit.val_wnids[number - 1]
    return labels


def prepare(archives: dict[str, Path], out: Path, force: bool = False, say=print) -> dict:
    """Write `out` from archives {'devkit', 'train', 'val'}: Path; return its meta.json content
    (with 'warning' when the set is partial)."""
    official = OFFICIAL["imagenet"]
    devkit = read_devkit(archives["devkit"])
    classes = scan_train(archives["train"], devkit, archives["devkit"])
    labels = scan_val(archives["val"], devkit, archives["devkit"])
    digests = {"devkit": check_digest(official["devkit"], devkit.digest, archives["devkit"])
               if is_complete("imagenet", "val", len(devkit.val_wnids)) else None}
    with staged(out, force, say) as tmp:
        val, dropped, digests["val"] = _extract_val(archives["val"], tmp / "val", labels, set(classes))
        train, digests["train"] = _extract_train(archives["train"], tmp / "train", len(classes), say)
        counts = {"train": sum(train.values()), "val": sum(val.values())}
        meta = {"dataset": "imagenet", "format": "imagefolder", "num_classes": len(classes),
                "classes": {w: ", ".join(devkit.wnid_to_classes[w]) for w in classes}, "counts": counts,
                "val_dropped": dropped, "archives": {role: {"file": str(p), "digest": digests.get(role)}
                                                     for role, p in archives.items()}}
        write_meta(tmp, meta)
        _write_torchvision_meta(tmp, devkit)
    warning = shortfall("imagenet", counts)
    if dropped:
        warning = f"{warning}; {dropped} validation images of classes the training tar lacks were left out"
    if warning:
        meta["warning"] = warning
    return meta


def _extract_val(path: Path, root: Path, labels: dict[str, str], classes: set[str]) -> tuple[Counter, int, str | None]:
    per_class, dropped = Counter(), 0

    def each(member, f):
        nonlocal dropped
        wnid = labels.get(member.name)
        if wnid is None:   # the headers were listed before; a different member now means the file changed
            raise MaebenchError(f"{path}: member {member.name} was not in the archive when it was listed")
        if wnid not in classes:
            dropped += 1
            return
        (root / wnid).mkdir(parents=True, exist_ok=True)
        write_member(f, root / wnid / member.name, str(path), member.name)
        per_class[wnid] += 1

    with open(path, "rb") as f:
        digest = stream_tar(f, str(path), each, digest="md5")
    complete = is_complete("imagenet", "val", len(labels))
    return per_class, dropped, check_digest(OFFICIAL["imagenet"]["val"], digest, path) if complete else None


def _extract_train(path: Path, root: Path, n_classes: int, say) -> tuple[Counter, str | None]:
    per_class = Counter()

    def each_class(member, f):
        wnid = TRAIN_TAR.match(member.name).group(1)
        (root / wnid).mkdir(parents=True)
        label = f"{path}: {member.name}"

        def each_image(image, g):
            if not TRAIN_IMAGE.match(image.name) or g is None or not image.name.startswith(wnid + "_"):
                raise MaebenchError(f"{label}: member {image.name} is not a training image {wnid}_N.JPEG")
            write_member(g, root / wnid / image.name, label, image.name)
            per_class[wnid] += 1

        stream_tar(f, label, each_image)
        if not per_class[wnid]:
            raise MaebenchError(f"{label}: no images in the per-class tar")
        if len(per_class) % PROGRESS_EVERY == 0:
            say(f"train: {len(per_class)} of {n_classes} classes, {sum(per_class.values()):,} images")

    with open(path, "rb") as f:
        digest = stream_tar(f, str(path), each_class, digest="md5")
    complete = is_complete("imagenet", "train", sum(per_class.values()))
    return per_class, check_digest(OFFICIAL["imagenet"]["train"], digest, path) if complete else None


def _write_torchvision_meta(root: Path, devkit: Devkit) -> None:
    """torchvision's meta.bin: (wnid -> class names, wnid of each validation image)."""
    import torch

    torch.save((devkit.wnid_to_classes, devkit.val_wnids), root / TORCHVISION_META)
