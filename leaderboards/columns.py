"""What a leaderboard column is: one task metric on one dataset (and, for partial fine-tuning,
one K). The dataset is part of the column so that results on different datasets are never
averaged together or compared with each other, and the header always names it."""
from __future__ import annotations

import math
from dataclasses import dataclass

from maebench.tasks.table import TASKS as _TASK_TABLE

# Tasks whose table has one column per K (tuned last blocks) of their headline metric instead
# of one column per metric.
PER_K_TASKS = ("partial",)
# Task -> the metrics that get a column, in display order; labels and headlines: all from the
# task table.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    t.name: t.headline if t.name in PER_K_TASKS else tuple(m for m, _ in t.metrics)
    for t in _TASK_TABLE.values()}
HEADLINE: dict[str, tuple[str, ...]] = {t.name: t.headline for t in _TASK_TABLE.values()}
TASKS = tuple(TASK_METRICS)
TASK_LABELS = {t.name: t.label for t in _TASK_TABLE.values()}
METRIC_LABELS = {m: label for t in _TASK_TABLE.values() for m, label in t.metrics}

# The paper's datasets, and the directory names under which a user's copy may be stored.
# Only a result on one of these is ever compared with a paper number.
PAPER_DATASETS = {"imagenet": "ImageNet-1K", "coco": "COCO", "ade20k": "ADE20K"}
_DATASET_ALIASES = {
    "imagenet": "imagenet", "imagenet-1k": "imagenet", "imagenet1k": "imagenet", "in1k": "imagenet",
    "ilsvrc2012": "imagenet", "ilsvrc-2012": "imagenet",
    "coco": "coco", "coco2017": "coco", "coco-2017": "coco",
    "ade20k": "ade20k", "ade-20k": "ade20k", "adechallengedata2016": "ade20k",
}


def canonical_dataset(name: str | None) -> str:
    """The paper's short name for a copy of a paper dataset; any other name unchanged."""
    if not name:
        return "unknown"
    return _DATASET_ALIASES.get(name.strip().lower().replace("_", "-"), name.strip())


def dataset_label(dataset: str) -> str:
    return PAPER_DATASETS.get(dataset, dataset)


def parse_blocks(value) -> float | None:
    """Partial fine-tuning K from a run config ('blocks'): a number, or 'mlp' for the paper's
    'MLP of the last block only' variant (K = 0.5)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if value.strip().lower() in ("mlp", "half"):
            return 0.5
        try:
            value = float(value)
        except ValueError:
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def format_blocks(k: float | None) -> str:
    if k is None:
        return "?"
    return str(int(k)) if float(k).is_integer() else f"{k:g}"


@dataclass(frozen=True)
class Column:
    task: str
    metric: str
    dataset: str
    blocks: float | None = None   # PER_K_TASKS only

    @property
    def key(self) -> str:
        """Stable machine name, e.g. 'partial/top1/shapes/K=1' (csv/json column names)."""
        k = f"/K={format_blocks(self.blocks)}" if self.task in PER_K_TASKS else ""
        return f"{self.task}/{self.metric}/{self.dataset}{k}"

    @property
    def header(self) -> str:
        """Human header that names the dataset, e.g. 'partial K=1 top-1 [shapes]'."""
        task = TASK_LABELS.get(self.task, self.task)
        if self.task in PER_K_TASKS:
            task += f" K={format_blocks(self.blocks)}"
        metric = METRIC_LABELS.get(self.metric, self.metric)
        return f"{task} {metric} [{dataset_label(self.dataset)}]"

    @property
    def short_header(self) -> str:
        """The header inside its task's own table: 'top-1', 'APbox', 'K=1'."""
        if self.task in PER_K_TASKS:
            return f"K={format_blocks(self.blocks)}"
        return METRIC_LABELS.get(self.metric, self.metric)

    @property
    def is_paper_dataset(self) -> bool:
        return self.dataset in PAPER_DATASETS

    def sort_key(self) -> tuple:
        task_i = TASKS.index(self.task) if self.task in TASKS else len(TASKS)
        metrics = TASK_METRICS.get(self.task, ())
        metric_i = metrics.index(self.metric) if self.metric in metrics else len(metrics)
        # The user's datasets first, the paper's dataset last, within each task.
        return (task_i, self.is_paper_dataset, self.dataset.lower(),
                -1.0 if self.blocks is None else self.blocks, metric_i)
