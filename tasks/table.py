"""The one table of transfer tasks. The CLI (`--task` choices, which options a task takes), the
leaderboard (columns, metric labels) and the demo all read it; nothing else lists task names.

Torch-free: a task's code is imported only when the task runs, so `maebench --help` stays fast.
To add a task: write `maebench/protocols/<name>.yaml` and a module with `run(args) -> int`,
then add one `Task(...)` line below.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Task:
    name: str                              # `maebench run --task NAME`, the results row's task
    protocol: str                          # maebench/protocols/<protocol>.yaml
    entry: str                             # "module:function" implementing run(args) -> int
    label: str                             # short display name (leaderboard headers)
    metrics: tuple[tuple[str, str], ...]   # (stored metric name, display label), display order
    headline: tuple[str, ...]              # the metrics a summary column shows
    options: tuple[str, ...] = ()          # task-specific command-line options (argparse dests)
    summary: str = ""

    def runner(self) -> Callable:
        module, function = self.entry.split(":")
        return getattr(importlib.import_module(module), function)

    def metric_label(self, metric: str) -> str:
        return dict(self.metrics).get(metric, metric)


_LABELS = ("labels_per_class", "label_fraction")

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("finetune", "finetune", "maebench.tasks.finetune:run", "fine-tune",
         (("top1", "top-1"), ("top5", "top-5")), ("top1",), _LABELS,
         "end to end, layer-wise lr decay, mixup/cutmix, RandAug (Table 9)"),
    Task("linprobe", "linprobe", "maebench.tasks.linprobe:run", "linear",
         (("top1", "top-1"), ("top5", "top-5")), ("top1",), (*_LABELS, "cached_features", "sweep", "holdout", "head"),
         "frozen encoder, BN + linear on [cls], LARS (Table 10)"),
    Task("partial", "partial", "maebench.tasks.partial:run", "partial",
         (("top1", "top-1"), ("top5", "top-5")), ("top1",), ("blocks", *_LABELS),
         "tune the last K blocks, K in {0, 0.5, 1, 2, ...} (Fig. 9)"),
    Task("knn", "knn", "maebench.tasks.knn:run", "k-NN",
         (("top1", "top-1"), ("top5", "top-5")), ("top1",), (*_LABELS, "cached_features"),
         "weighted k-NN on frozen [cls] features (k 20, T 0.07)"),
    Task("coco", "coco", "maebench.tasks.coco:run", "COCO",
         (("bbox/AP", "APbox"), ("segm/AP", "APmask"), ("bbox/AP50", "AP50"), ("bbox/AP75", "AP75")),
         ("bbox/AP", "segm/AP"), ("neck", "train_json", "val_json", "images", "eval_predictions"),
         "Mask R-CNN + FPN, COCOeval bbox + segm (A.3, Table 4)"),
    Task("ade20k", "ade20k", "maebench.tasks.ade20k:run", "ADE20K",
         (("mIoU", "mIoU"), ("mAcc", "mAcc")), ("mIoU",), ("num_classes", "ignore_index", "reduce_zero_label"),
         "UperNet + auxiliary FCN, mIoU (A.4, Table 5)"),
)}

# every task-specific option, so that one given to a task that does not take it is an error
TASK_OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(o for t in TASKS.values() for o in t.options))
