"""`maebench data prepare shapes`: the deterministic generated benchmark.

Three sets in the real on-disk formats (ImageFolder, COCO instances, ADE20K layout), so the
tests and the demo exercise the same readers as ImageNet, COCO 2017 and ADE20K. Same options,
same bytes: every image is a pure function of (seed, kind, split, index).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from maebench.data.output import publish_dir
from maebench.errors import UsageError

KINDS = ("classification", "coco", "ade20k")


@dataclass(frozen=True)
class ShapesOptions:
    seed: int = 0
    img_size: int = 32            # classification
    classes: int = 10
    train_per_class: int = 100
    val_per_class: int = 20
    coco_img_size: int = 128
    coco_train_images: int = 64
    coco_val_images: int = 16
    ade_img_size: int = 64
    ade_train_images: int = 64
    ade_val_images: int = 16

    def validate(self) -> None:
        from maebench.data import draw

        if not 2 <= self.classes <= len(draw.SHAPES):
            raise UsageError(f"--classes must be between 2 and {len(draw.SHAPES)}, got {self.classes}")
        for name in ("img_size", "coco_img_size", "ade_img_size"):
            if not 16 <= getattr(self, name) <= 1024:
                raise UsageError(f"--{name.replace('_', '-')} must be between 16 and 1024, got {getattr(self, name)}")
        for name in ("train_per_class", "val_per_class", "coco_train_images", "coco_val_images",
                     "ade_train_images", "ade_val_images"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


def generate(kind: str, root: Path, opts: ShapesOptions) -> dict:
    """Write one kind into the (new, empty) directory `root`; return its meta."""
    root.mkdir(parents=True, exist_ok=True)
    if kind == "classification":
        from maebench.data import shapes_classification
        meta = shapes_classification.write(root, opts.seed, opts.img_size, opts.classes,
                                           opts.train_per_class, opts.val_per_class)
    elif kind == "coco":
        from maebench.data import shapes_coco
        meta = shapes_coco.write(root, opts.seed, opts.coco_img_size, opts.coco_train_images, opts.coco_val_images)
    elif kind == "ade20k":
        from maebench.data import shapes_ade20k
        meta = shapes_ade20k.write(root, opts.seed, opts.ade_img_size, opts.ade_train_images, opts.ade_val_images)
    else:
        from maebench.errors import unknown
        raise unknown("dataset kind", kind, KINDS)
    return meta


def prepare(out: Path, opts: ShapesOptions = ShapesOptions(), kinds=KINDS, replace: bool = True) -> dict[str, Path]:
    """Generate `kinds` under out/<kind>, each published atomically; return kind -> path."""
    opts.validate()
    out = Path(out).expanduser()
    paths = {}
    for kind in kinds:
        target = out / kind
        with publish_dir(target, replace=replace) as tmp:
            generate(kind, tmp, opts)
        paths[kind] = target
    _write_readme(out, opts)
    return paths


def _write_readme(out: Path, opts: ShapesOptions) -> None:
    lines = ["maebench generated shapes benchmark (deterministic: same options, same bytes)",
             "  classification/  ImageFolder: train/<class>/*.png, val/<class>/*.png",
             "  coco/            COCO instances: annotations/instances_{train,val}.json, train/, val/",
             "  ade20k/          ADE20K layout: images/{training,validation}, annotations/{training,validation}",
             "Each folder's meta.json records the options it was generated with.",
             "Default options: " + ", ".join(f"{k}={v}" for k, v in asdict(ShapesOptions()).items())]
    (out / "README.txt").write_text("\n".join(lines) + "\n")

