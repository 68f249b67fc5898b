"""`maebench run --task T --backbone NAME`: one transfer task on one backbone.

Task-specific options are grouped here so that `maebench run --help` documents every task;
each task module reads the ones it uses from `args`."""
from __future__ import annotations

import argparse
import importlib

from maebench.commands.common import add_training_options
from maebench.errors import unknown

# task name -> (module, function) implementing it: run(args) -> int
TASKS = {
    "finetune": "tasks.classification",
    "linprobe": "tasks.classification",
    "partial": "tasks.classification",
    "knn": "tasks.classification",
    "coco": "tasks.coco",
    "ade20k": "tasks.ade20k",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, metavar="TASK", help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--backbone", metavar="NAME", help="registered or catalogued backbone name")
    p.add_argument("--data", metavar="DIR", help="dataset directory (default: the embedded generated set)")
    add_training_options(p)
    c = p.add_argument_group("classification (finetune, linprobe, partial, knn)")
    c.add_argument("--blocks", metavar="K[,K...]",
                   help="partial: tune the last K blocks (0.5 = last block's MLP only); a list sweeps")
    c.add_argument("--labels-per-class", type=int, metavar="N", help="low-label transfer: N labels per class")
    c.add_argument("--label-fraction", type=float, metavar="F", help="low-label transfer: fraction of labels")
    c.add_argument("--cached-features", action="store_true",
                   help="linprobe/knn: run the frozen encoder once per image and train on stored features")
    d = p.add_argument_group("coco")
    d.add_argument("--neck", choices=["vit-fpn", "simple-pyramid"], help="ViT-to-FPN adapter")
    d.add_argument("--train-json", metavar="FILE", help="COCO-format training annotations")
    d.add_argument("--val-json", metavar="FILE", help="COCO-format validation annotations")
    d.add_argument("--images", metavar="DIR", help="image directory for --train-json/--val-json")
    d.add_argument("--eval-predictions", metavar="FILE.json",
                   help="re-score a saved COCO results file against the dataset (no model is built)")
    s = p.add_argument_group("ade20k")
    s.add_argument("--num-classes", type=int, help="number of classes of a custom segmentation set")
    s.add_argument("--ignore-index", type=int, help="label value ignored by loss and metrics (e.g. 255)")
    s.add_argument("--reduce-zero-label", action=argparse.BooleanOptionalAction, default=None,
                   help="map label 0 to ignore and 1..K to 0..K-1 (ADE20K convention)")


def main(args: argparse.Namespace) -> int:
    if args.task not in TASKS:
        raise unknown("task", args.task, TASKS)
    module = importlib.import_module(TASKS[args.task])
    return int(module.run(args) or 0)
