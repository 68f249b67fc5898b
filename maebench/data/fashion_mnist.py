"""`maebench data prepare fashion-mnist`: the real Fashion-MNIST IDX files (Debian package
dataset-fashion-mnist, or a directory the user gives) converted to the ImageFolder layout, so
that the same ImageFolder reader serves it, the generated set and ImageNet."""
from __future__ import annotations

import gzip
import os
import time
import zlib
from pathlib import Path

import numpy as np

from maebench.data.output import publish_dir, save_png, write_meta
from maebench.errors import MaebenchError, UsageError

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
FILES = {  # split -> (images stem, labels stem); the test set is our val split
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # ubyte data (0x08), 3 and 1 dimensions


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """uint8 array of an IDX file (gzip'd or plain), its header checked against `magic`
    (0x0000 0x08 <ndim>): a wrong magic number or a short file is an error naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise MaebenchError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4:
        raise MaebenchError(f"{path} is not an IDX file (only {len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise MaebenchError(f"{path} is not an IDX file of the expected kind: magic number {found:#010x}, "
                            f"expected {magic:#010x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MaebenchError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise MaebenchError(f"{path}: IDX header says {shape} ({expected} bytes of data) but the file has "
                            f"{len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_sources(source: str | os.PathLike | None) -> dict[str, tuple[Path, Path]]:
    """split -> (images file, labels file), accepting name, name.gz and the '.' spelling of
    the original distribution (train-images.idx3-ubyte)."""
    folder = Path(source).expanduser() if source else DEFAULT_SOURCE
    hint = ("pass --source DIR" if source else
            "install it with `apt-get install dataset-fashion-mnist` or pass --source DIR")
    if not folder.is_dir():
        raise MaebenchError(f"Fashion-MNIST directory not found: {folder}; {hint}")
    found = {}
    for split, stems in FILES.items():
        paths = []
        for stem in stems:
            names = [stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"]
            hit = next((folder / n for n in names if (folder / n).is_file()), None)
            if hit is None:
                raise MaebenchError(f"Fashion-MNIST file {stem}[.gz] not found in {folder}; {hint}")
            paths.append(hit)
        found[split] = (paths[0], paths[1])
    return found


def load_split(images_file: Path, labels_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) with counts and label range checked."""
    images = read_idx(images_file, IMAGES_MAGIC)
    labels = read_idx(labels_file, LABELS_MAGIC)
    if images.ndim != 3 or labels.ndim != 1:
        raise MaebenchError(f"{images_file} / {labels_file}: expected [N, H, W] images and [N] labels")
    if len(images) != len(labels):
        raise MaebenchError(f"{images_file} has {len(images)} images but {labels_file} has {len(labels)} labels")
    if labels.size and labels.max() >= len(CLASSES):
        raise MaebenchError(f"{labels_file}: label {int(labels.max())} is out of range 0..{len(CLASSES) - 1}")
    return images, labels


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None,
            limit_per_class: int | None = None) -> dict:
    """Write out/{train,val}/<class>/NNNNN.png (NNNNN = index in the IDX file) and out/meta.json."""
    if limit_per_class is not None and limit_per_class < 1:
        raise UsageError(f"--limit-per-class must be at least 1, got {limit_per_class}")
    sources = find_sources(source)
    splits = {split: load_split(*files) for split, files in sources.items()}  # read all before writing
    t0 = time.perf_counter()
    counts = {}
    with publish_dir(Path(out).expanduser()) as tmp:
        for split, (images, labels) in splits.items():
            counts[split] = _write_split(tmp / split, images, labels, limit_per_class)
        meta = {"dataset": "fashion-mnist", "format": "imagefolder", "classes": list(CLASSES),
                "num_classes": len(CLASSES), "img_size": int(splits["train"][0].shape[1]),
                "limit_per_class": limit_per_class, "counts": counts,
                "source": {split: [str(p) for p in files] for split, files in sources.items()}}
        write_meta(tmp, meta)
        (tmp / "README.txt").write_text(
            "Fashion-MNIST (Zalando Research, MIT licence) in ImageFolder layout.\n"
            "train/ = the 60k training set, val/ = the 10k test set; file name = index in the IDX file.\n"
            "Regenerate with: maebench data prepare fashion-mnist\n")
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    return meta


def _write_split(root: Path, images: np.ndarray, labels: np.ndarray, limit_per_class: int | None) -> dict[str, int]:
    for name in CLASSES:
        (root / name).mkdir(parents=True)
    written = [0] * len(CLASSES)
    for i, (image, label) in enumerate(zip(images, labels)):
        if limit_per_class is not None and written[label] >= limit_per_class:
            continue
        save_png(root / CLASSES[label] / f"{i:05d}.png", image)
        written[label] += 1
    return dict(zip(CLASSES, written))
