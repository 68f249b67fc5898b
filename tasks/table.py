"""The one table of transfer tasks. The CLI (`--task` choices, which options a task takes), the
runner (each task's recipes), the leaderboard (columns, metric labels) and the demo all read it;
nothing else lists task names.

Torch-free: a task's code is imported only when the task runs, so `maebench --help` stays fast.
To add a task: write `maebench/protocols/<name>.yaml` and a module with `recipes(spec)`
(docs/architecture.md), then add one `Program(...)` line below.
"""
from __future__ import annotations

from maebench.runspec import Program

_LABELS = ("labels_per_class", "label_fraction")
_TOP = (("top1", "top-1"), ("top5", "top-5"))

TASKS: dict[str, Program] = {t.name: t for t in (
    Program("finetune", "task", "finetune", "maebench.tasks.finetune:recipes", _LABELS,
            "end to end, layer-wise lr decay, mixup/cutmix, RandAug (Table 9)",
            "fine-tune", _TOP, ("top1",)),
    Program("linprobe", "task", "linprobe", "maebench.tasks.linprobe:recipes",
            (*_LABELS, "cached_features", "sweep", "holdout", "head"),
            "frozen encoder, BN + linear on [cls], LARS (Table 10)", "linear", _TOP, ("top1",), joint_search=True),
    Program("partial", "task", "partial", "maebench.tasks.partial:recipes", ("blocks", *_LABELS),
            "tune the last K blocks, K in {0, 0.5, 1, 2, ...} (Fig. 9)", "partial", _TOP, ("top1",),
            search_points="maebench.tasks.partial:search_points"),
    Program("knn", "task", "knn", "maebench.tasks.knn:recipes", (*_LABELS, "cached_features"),
            "weighted k-NN on frozen [cls] features (k 20, T 0.07)", "k-NN", _TOP, ("top1",), joint_search=True),
    Program("coco", "task", "coco", "maebench.tasks.coco:recipes",
            ("neck", "train_json", "val_json", "images", "eval_predictions"),
            "Mask R-CNN + FPN, COCOeval bbox + segm (A.3, Table 4)", "COCO",
            (("bbox/AP", "APbox"), ("segm/AP", "APmask"), ("bbox/AP50", "AP50"), ("bbox/AP75", "AP75")),
            ("bbox/AP", "segm/AP")),
    Program("ade20k", "task", "ade20k", "maebench.tasks.ade20k:recipes",
            ("num_classes", "ignore_index", "reduce_zero_label"),
            "UperNet + auxiliary FCN, mIoU (A.4, Table 5)", "ADE20K", (("mIoU", "mIoU"), ("mAcc", "mAcc")),
            ("mIoU",)),
)}
