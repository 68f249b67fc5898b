"""`maebench data`: prepare (generate or convert) and check datasets.

    maebench data prepare shapes [--out DIR] [--img-size N] ...
    maebench data prepare fashion-mnist [--out DIR] [--source DIR] [--limit-per-class N]
    maebench data prepare fashion [--out DIR] [--fashion-dir DIR] [--seed N] ...
    maebench data prepare imagenet|coco|ade20k [--archives DIR | --archive FILE] [--out DIR] [--force] [--download]
    maebench data check --task {classification,coco,ade20k} DIR
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

TASKS = ("classification", "coco", "ade20k")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    prep = sub.add_parser("prepare", help="write a dataset in the real on-disk formats",
                          description="Write a dataset in the real on-disk formats.")
    which = prep.add_subparsers(dest="dataset", metavar="DATASET")
    which.required = True

    s = which.add_parser("shapes", help="the deterministic generated benchmark (classification, COCO, ADE20K)",
                         description="Generate the shapes benchmark: same options, same bytes.")
    s.add_argument("--out", metavar="DIR", help="output directory (default: $MAEBENCH_HOME/data/shapes)")
    s.add_argument("--only", choices=TASKS, action="append", help="generate only this kind (repeatable)")
    s.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    s.add_argument("--img-size", type=int, default=32, help="classification image size in px (default 32)")
    s.add_argument("--classes", type=int, default=10, help="number of shape classes, 2..10 (default 10)")
    s.add_argument("--train-per-class", type=int, default=100, help="classification train images per class (default 100)")
    s.add_argument("--val-per-class", type=int, default=20, help="classification val images per class (default 20)")
    s.add_argument("--coco-img-size", type=int, default=128, help="COCO set image size in px (default 128)")
    s.add_argument("--coco-train-images", type=int, default=64, help="COCO train images (default 64)")
    s.add_argument("--coco-val-images", type=int, default=16, help="COCO val images (default 16)")
    s.add_argument("--ade-img-size", type=int, default=64, help="ADE20K-layout image size in px (default 64)")
    s.add_argument("--ade-train-images", type=int, default=64, help="ADE20K-layout training images (default 64)")
    s.add_argument("--ade-val-images", type=int, default=16, help="ADE20K-layout validation images (default 16)")

    f = which.add_parser("fashion-mnist", help="convert the real Fashion-MNIST IDX files to ImageFolder",
                         description="Convert Fashion-MNIST (Debian package dataset-fashion-mnist, or --source) "
                                     "to train/<class>/*.png and val/<class>/*.png.")
    f.add_argument("--out", metavar="DIR", help="output directory (default: $MAEBENCH_HOME/data/fashion-mnist)")
    f.add_argument("--source", metavar="DIR",
                   help="directory with the four IDX files, gzip'd or not (default: /usr/share/datasets/fashion-mnist)")
    f.add_argument("--limit-per-class", type=int, metavar="N", help="keep only the first N images of each class per split")

    w = which.add_parser("fashion", help="the fashion world: Fashion-MNIST as ImageFolder, COCO and ADE20K sets",
                         description="Write the fashion world from the real Fashion-MNIST IDX files: classification "
                                     "(ImageFolder), coco (canvases of several items, COCO 2017 instances) and ade20k "
                                     "(the same canvases, ADEChallengeData2016 layout). Same options, same bytes.")
    w.add_argument("--out", metavar="DIR", help="output directory (default: $MAEBENCH_HOME/data/fashion)")
    w.add_argument("--fashion-dir", "--source", dest="fashion_dir", metavar="DIR",
                   help="directory with the four IDX files, gzip'd or not (default: /usr/share/datasets/fashion-mnist)")
    w.add_argument("--only", choices=TASKS, action="append", help="write only this kind (repeatable)")
    w.add_argument("--seed", type=int, default=0, help="canvas seed (default 0)")
    w.add_argument("--train-per-class", type=int, metavar="N", help="classification: first N training images per class")
    w.add_argument("--val-per-class", type=int, metavar="N", help="classification: first N test images per class")
    w.add_argument("--canvas-size", type=int, default=64, help="COCO / ADE20K canvas size in px (default 64)")
    for kind, default_train, default_val in (("coco", 800, 200), ("ade", 800, 200)):
        w.add_argument(f"--{kind}-train-images", type=int, default=default_train,
                       help=f"{kind} training canvases (default {default_train})")
        w.add_argument(f"--{kind}-val-images", type=int, default=default_val,
                       help=f"{kind} validation canvases (default {default_val})")

    from maebench.commands import data_archives

    data_archives.add_parsers(which)

    c = sub.add_parser("check", help="validate a dataset directory and list every problem",
                       description="Validate a dataset directory without training: counts, classes and every "
                                   "problem found. Exit 1 when there are problems.")
    c.add_argument("--task", required=True, choices=TASKS, help="the layout to check")
    c.add_argument("dir", metavar="DIR", help="dataset directory")
    c.add_argument("--num-classes", type=int, metavar="K",
                   help="ade20k: number of classes (default: from meta.json or objectInfo150.txt)")
    c.add_argument("--quick", action="store_true",
                   help="check image file structure only (PIL verify), without decoding pixels")


def main(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        return _check(args)
    if args.dataset in ("imagenet", "coco", "ade20k"):
        from maebench.commands import data_archives

        return data_archives.main(args)
    if args.dataset == "shapes":
        return _prepare_shapes(args)
    if args.dataset == "fashion":
        return _prepare_fashion(args)
    return _prepare_fashion_mnist(args)


def _prepare_shapes(args: argparse.Namespace) -> int:
    from maebench.data import shapes
    from maebench.home import data_dir

    opts = shapes.ShapesOptions(
        seed=args.seed, img_size=args.img_size, classes=args.classes, train_per_class=args.train_per_class,
        val_per_class=args.val_per_class, coco_img_size=args.coco_img_size, coco_train_images=args.coco_train_images,
        coco_val_images=args.coco_val_images, ade_img_size=args.ade_img_size, ade_train_images=args.ade_train_images,
        ade_val_images=args.ade_val_images)
    out = Path(args.out).expanduser() if args.out else data_dir() / "shapes"
    kinds = tuple(k for k in TASKS if k in args.only) if args.only else TASKS
    t0 = time.perf_counter()
    paths = shapes.prepare(out, opts, kinds)
    for kind, path in paths.items():
        print(f"{kind:<15} {path}")
    print(f"shapes benchmark written to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _prepare_fashion_mnist(args: argparse.Namespace) -> int:
    from maebench.data import fashion_mnist
    from maebench.home import data_dir

    out = Path(args.out).expanduser() if args.out else data_dir() / "fashion-mnist"
    meta = fashion_mnist.prepare(out, args.source, args.limit_per_class)
    for split, counts in meta["counts"].items():
        print(f"{split:<5} {sum(counts.values()):>6} images in {len(counts)} classes")
    print(f"fashion-mnist written to {out} in {meta['seconds']:.1f} s")
    return 0


def _prepare_fashion(args: argparse.Namespace) -> int:
    from maebench.data import fashion_world
    from maebench.home import data_dir

    opts = fashion_world.FashionOptions(
        seed=args.seed, train_per_class=args.train_per_class, val_per_class=args.val_per_class,
        canvas_size=args.canvas_size, coco_train_images=args.coco_train_images, coco_val_images=args.coco_val_images,
        ade_train_images=args.ade_train_images, ade_val_images=args.ade_val_images)
    out = Path(args.out).expanduser() if args.out else data_dir() / "fashion"
    kinds = tuple(k for k in TASKS if k in args.only) if args.only else TASKS
    t0 = time.perf_counter()
    fashion_world.prepare(out, opts, args.fashion_dir, kinds)
    print(f"fashion world written to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _check(args: argparse.Namespace) -> int:
    from maebench.data.check import check

    report = check(args.task, args.dir, num_classes=args.num_classes, decode=not args.quick)
    print(report.render())
    return 1 if report.problems else 0
