"""`maebench data prepare imagenet|coco|ade20k`: the official archives unpacked into the layouts
the tasks read (maebench/data/imagenet_archives.py, coco_archives.py, ade20k_archive.py).

    maebench data prepare imagenet [--archives DIR] [--out DIR] [--force] [--download]
    maebench data prepare coco [--archives DIR] [--out DIR] [--force] [--download]
    maebench data prepare ade20k [--archive FILE] [--out DIR] [--force] [--download]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DATASETS = ("imagenet", "coco", "ade20k")
_OUT = {"imagenet": "imagenet", "coco": "coco", "ade20k": "ADEChallengeData2016"}
_HELP = {
    "imagenet": ("ImageNet-1K from ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz",
                 "Unpack ILSVRC2012's official archives into train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (validation "
                 "images sorted into their classes by the devkit's ground truth), image bytes unchanged."),
    "coco": ("COCO 2017 from train2017.zip, val2017.zip and annotations_trainval2017.zip",
             "Unpack COCO 2017's official zips into train2017/, val2017/ and annotations/, image bytes unchanged."),
    "ade20k": ("ADE20K from ADEChallengeData2016.zip",
               "Unpack the official ADEChallengeData2016.zip into the ADEChallengeData2016 layout, bytes unchanged."),
}


def add_parsers(which) -> None:
    for name in DATASETS:
        short, long = _HELP[name]
        p = which.add_parser(name, help=short, description=long + " Work goes to OUT.partial, renamed to OUT when "
                             "complete; a partial set is a warning, a damaged or wrong archive an error.")
        if name == "ade20k":
            p.add_argument("--archive", metavar="FILE", help="ADEChallengeData2016.zip "
                           "(default: $MAEBENCH_HOME/data/archives/ade20k/ADEChallengeData2016.zip)")
        else:
            p.add_argument("--archives", metavar="DIR",
                           help=f"directory holding the official archives (default: $MAEBENCH_HOME/data/archives/{name})")
        p.add_argument("--out", metavar="DIR", help=f"output directory (default: $MAEBENCH_HOME/data/{_OUT[name]})")
        p.add_argument("--force", action="store_true", help="prepare again over an existing complete OUT")
        p.add_argument("--download", action="store_true",
                       help="download missing archives from their official URLs first"
                            + (" (image-net.org needs an account)" if name == "imagenet" else ""))


def main(args: argparse.Namespace) -> int:
    from maebench.data import archive_sources
    from maebench.home import data_dir

    name = args.dataset
    out = Path(args.out).expanduser() if args.out else data_dir() / _OUT[name]
    t0 = time.perf_counter()
    if name == "ade20k":
        from maebench.data import ade20k_archive

        archive = Path(args.archive).expanduser() if args.archive else None
        folder = archive.parent if archive else data_dir() / "archives" / "ade20k"
        paths = archive_sources.locate(name, folder, args.download, {"archive": archive} if archive else None)
        meta = ade20k_archive.prepare(paths["archive"], out, args.force)
    else:
        from maebench.data import coco_archives, imagenet_archives

        folder = Path(args.archives).expanduser() if args.archives else data_dir() / "archives" / name
        paths = archive_sources.locate(name, folder, args.download)
        module = imagenet_archives if name == "imagenet" else coco_archives
        meta = module.prepare(paths, out, args.force)
    for split, n in meta["counts"].items():
        print(f"{split:<10} {n:>9,} images")
    if meta.get("warning"):
        print(f"maebench: warning: {meta['warning']}", file=sys.stderr)
    print(f"{name} written to {out} in {time.perf_counter() - t0:.1f} s")
    return 0
