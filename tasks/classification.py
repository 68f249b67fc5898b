"""`maebench run --task finetune|linprobe|partial|knn`: image-classification transfer on any
ImageFolder dataset (ImageNet layout; default: the embedded shapes set).

    finetune   tasks/finetune.py   end to end, layer-wise lr decay, mixup/cutmix, RandAug (Table 9)
    linprobe   tasks/linprobe.py   frozen encoder, BN + linear on [cls], LARS (Table 10)
    partial    tasks/partial.py    tune the last K blocks, K in {0, 0.5, 1, 2, ...} (Fig. 9)
    knn        tasks/knn.py        weighted k-NN on frozen [cls] features (k 20, T 0.07)

This module only routes and rejects options that do not belong to the chosen task, so that a
flag the task would ignore is an error rather than a silent no-op.
"""
from __future__ import annotations

import argparse
import importlib

from maebench.errors import UsageError, unknown

MODULES = {"finetune": "tasks.finetune", "linprobe": "tasks.linprobe",
           "partial": "tasks.partial", "knn": "tasks.knn"}
# option (argparse dest) -> tasks that read it
ONLY_FOR = {"blocks": ("partial",), "cached_features": ("linprobe", "knn")}


def check_options(args: argparse.Namespace) -> None:
    for dest, tasks in ONLY_FOR.items():
        if getattr(args, dest, None) not in (None, False) and args.task not in tasks:
            flag = "--" + dest.replace("_", "-")
            raise UsageError(f"{flag} applies to --task {' / '.join(tasks)}, not {args.task}")
    if getattr(args, "labels_per_class", None) is not None and getattr(args, "label_fraction", None) is not None:
        raise UsageError("give at most one of --labels-per-class and --label-fraction")


def run(args: argparse.Namespace) -> int:
    if args.task not in MODULES:
        raise unknown("classification task", args.task, MODULES)
    check_options(args)
    return int(importlib.import_module(MODULES[args.task]).run(args) or 0)
