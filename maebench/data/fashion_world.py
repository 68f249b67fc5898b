"""`maebench data prepare fashion`: the "fashion" world, three sets made of real Fashion-MNIST
items (Debian package dataset-fashion-mnist, or --fashion-dir), in the on-disk formats of the
paper's datasets:

    classification/  ImageFolder, the 60k training and 10k test images (ImageNet's layout)
    coco/            COCO 2017 instances: canvases of several items, polygons and RLE masks
    ade20k/          ADEChallengeData2016 layout: the same canvases, 0 = background (ignored)

Validation canvases use only test-split items and training canvases only training-split items.
Same options and source files, same bytes. Each set is written to a hidden temporary directory
and renamed into place, so an interrupted run leaves no set a reader would take for complete;
a set whose meta.json does not match the options asked for is rebuilt.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from maebench.data import fashion_canvas, fashion_mnist
from maebench.data.output import META, publish_dir, write_meta
from maebench.errors import MaebenchError, UsageError

KINDS = ("classification", "coco", "ade20k")
PACKAGE = "dataset-fashion-mnist"


@dataclass(frozen=True)
class FashionOptions:
    seed: int = 0
    train_per_class: int | None = None   # classification: None = all 6,000 per class
    val_per_class: int | None = None     # classification: None = all 1,000 per class
    canvas_size: int = 64
    coco_train_images: int = 800
    coco_val_images: int = 200
    ade_train_images: int = 800
    ade_val_images: int = 200

    def validate(self) -> None:
        if not 32 <= self.canvas_size <= 512:
            raise UsageError(f"--canvas-size must be between 32 and 512, got {self.canvas_size}")
        for name, value in asdict(self).items():
            if name not in ("seed", "canvas_size") and value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def find_sources(fashion_dir: str | Path | None) -> dict[str, tuple[Path, Path]]:
    """split -> (images, labels) IDX files; a missing package is one line saying how to get it."""
    try:
        return fashion_mnist.find_sources(fashion_dir)
    except MaebenchError:
        where = Path(fashion_dir).expanduser() if fashion_dir else fashion_mnist.DEFAULT_SOURCE
        raise MaebenchError(
            f"Fashion-MNIST IDX files not found in {where}: install the Debian package {PACKAGE} "
            f"(`apt-get install -y {PACKAGE}`) or pass --fashion-dir DIR holding "
            "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] "
            "and t10k-labels-idx1-ubyte[.gz]") from None


def _kind_options(kind: str, opts: FashionOptions) -> dict:
    """The options one set depends on (its meta.json records them; a mismatch rebuilds it)."""
    if kind == "classification":
        return {"train_per_class": opts.train_per_class, "val_per_class": opts.val_per_class}
    prefix = "coco" if kind == "coco" else "ade"
    return {"seed": opts.seed, "canvas_size": opts.canvas_size,
            "train_images": getattr(opts, f"{prefix}_train_images"),
            "val_images": getattr(opts, f"{prefix}_val_images")}


def is_complete(path: Path, kind: str, opts: FashionOptions) -> bool:
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("dataset") == "fashion" and meta.get("kind") == kind and meta.get("options") == _kind_options(kind, opts)


def prepare(out: str | Path, opts: FashionOptions = FashionOptions(), fashion_dir: str | Path | None = None,
            kinds=KINDS, log=print) -> dict[str, Path]:
    """Write (or keep, when already complete for these options) out/<kind> for each kind."""
    opts.validate()
    out = Path(out).expanduser()
    sources = find_sources(fashion_dir)
    todo = [k for k in kinds if not is_complete(out / k, k, opts)]
    if todo:
        splits = {s: fashion_mnist.load_split(*files) for s, files in sources.items()}  # all read before writing
        out.mkdir(parents=True, exist_ok=True)
        for stale in [*out.glob(".*.tmp-*"), *out.glob(".*.old-*")]:  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        for kind in todo:
            t0 = time.perf_counter()
            target = out / kind
            if target.exists() and not (target / META).is_file() and _ours(out):
                shutil.rmtree(target)  # not complete (no meta.json): rebuilt, never used
            with publish_dir(target) as tmp:
                meta = _write(kind, tmp, opts, splits, sources)
            log(f"{kind:<15} {target} ({time.perf_counter() - t0:.1f} s)")
    for kind in kinds:
        if kind not in todo:
            log(f"{kind:<15} {out / kind} (complete, kept)")
    (out / "README.txt").write_text(README)
    return {k: out / k for k in kinds}


def _ours(out: Path) -> bool:
    """out was written by `prepare` (its README), so a set without meta.json in it is ours to rebuild;
    elsewhere publish_dir refuses to replace a directory maebench did not write."""
    try:
        return (out / "README.txt").read_text().startswith(README.splitlines()[0])
    except OSError:
        return False


def _write(kind: str, root: Path, opts: FashionOptions, splits, sources) -> dict:
    meta = {"dataset": "fashion", "kind": kind, "options": _kind_options(kind, opts),
            "classes": list(fashion_canvas.CLASSES), "num_classes": len(fashion_canvas.CLASSES),
            "source": {s: [str(p) for p in files] for s, files in sources.items()}}
    if kind == "classification":
        per_split = {"train": opts.train_per_class, "val": opts.val_per_class}
        meta["format"] = "imagefolder"
        meta["img_size"] = int(splits["train"][0].shape[1])
        meta["counts"] = {s: fashion_mnist._write_split(root / s, *splits[s], per_split[s]) for s in ("train", "val")}
    elif kind == "coco":
        (root / "annotations").mkdir()
        meta["format"] = "coco-instances"
        meta["categories"] = {str(c): n for c, n in zip(fashion_canvas.CATEGORY_IDS, fashion_canvas.CLASSES)}
        meta["counts"] = {s: fashion_canvas.write_coco_split(root, opts.seed, s, getattr(opts, f"coco_{s}_images"),
                                                             opts.canvas_size, *splits[s]) for s in ("train", "val")}
    else:
        meta.update(format="ade20k", reduce_zero_label=True, ignore_index=255, background=0)
        meta["counts"] = {s: fashion_canvas.write_ade_split(root, opts.seed, s, getattr(opts, f"ade_{s}_images"),
                                                            opts.canvas_size, *splits[s]) for s in ("train", "val")}
    write_meta(root, meta)
    return meta


README = """maebench "fashion" world: real Fashion-MNIST items (Zalando Research, MIT licence)
  classification/  ImageFolder: train/<class>/NNNNN.png (60k training set), val/ (10k test set)
  coco/            COCO instances: annotations/instances_{train,val}.json, train/*.jpg, val/*.jpg;
                   canvases with several pasted items (later items occlude earlier ones); masks and
                   boxes from each item's visible pixels; polygons and compressed RLE; category ids
                   non-contiguous; each annotation's "item" names its source image (train:/t10k:NNNNN)
  ade20k/          ADE20K layout from the same canvases: 0 = background (ignored, reduce_zero_label),
                   1..10 = the classes
Training canvases use only training-split items, validation canvases only test-split items.
Regenerate with: maebench data prepare fashion (options in each meta.json)
"""
