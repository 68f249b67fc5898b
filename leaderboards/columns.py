"""What a leaderboard column is: one task metric on one dataset (and, for partial fine-tuning,
one K). The dataset is part of the column so that results on different datasets are never
averaged together or compared with each other, and the header always names it."""
from __future__ import annotations

import math
from dataclasses import dataclass

from maebench.leaderboards.searched import is_searched
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


# Protocols of one task that are different measurements (never one cell): '' is the task's own
# (paper) protocol. Linear probing: 'sweep' = the grid of heads chosen on a held-out slice of
# the training set (tasks/linear_sweep.py), 'logreg' = L-BFGS logistic regression (C chosen the
# same way). Every task: 'searched' = recipe values chosen per backbone by `--search`
# (maebench/search.py, leaderboards/searched.py); a searched logistic regression is
# 'searched-logreg', so that it shares a cell with neither. Only the paper's protocol ('') is
# compared with the paper.
PROTOCOLS = ("", "sweep", "logreg", "searched", "searched-logreg")
SEARCHED_PROTOCOLS = ("searched", "searched-logreg")
# a label: the protocol's name, or a format of the task's own label ({task})
PROTOCOL_LABELS = {"sweep": "linear (swept)", "logreg": "logreg", "searched": "{task} (searched)",
                   "searched-logreg": "logreg (searched)"}
_SEARCHED_NOTE = ("chosen per backbone by `--search` on a held-out part of the training data (the row's "
                  "`search` config: the space, the held-out fraction, the budget in full-run equivalents), the "
                  "chosen point retrained on all of the training data and scored once; not the paper's fixed "
                  "recipe, so never compared with the paper (the chosen values: the table's `chosen` column; "
                  "every trial: `maebench runs show RUN_ID`)")
PROTOCOL_NOTES = {
    "sweep": "swept: every head of a learning-rate x weight-decay x input ([cls] / average-pooled patch "
             "tokens / the backbone's own probe feature where it differs from both; last 1 or 4 blocks) grid "
             "trained on cached features, the one with the best top-1 on a held-out slice of the training set "
             "retrained on all of it and scored once; not the paper's single-lr protocol, so never compared "
             "with the paper",
    "logreg": "logreg: L-BFGS logistic regression on cached features, C chosen on a held-out slice of the "
              "training set; not the paper's protocol, so never compared with the paper",
    "searched": "searched: recipe values " + _SEARCHED_NOTE,
    "searched-logreg": "logreg (searched): logistic regression with recipe values " + _SEARCHED_NOTE,
}


def protocol_of(task: str, config: dict) -> str:
    """The protocol a run's config measured: 'searched' for any task when the config records a
    search ('searched-logreg' for a searched logistic regression; a searched sweep is 'searched':
    its grid is what the search chose from), else for the linear probe 'logreg' or 'sweep', else
    '' (the task's own)."""
    logreg = task == "linprobe" and config.get("head") == "logreg"
    if is_searched(config):
        return "searched-logreg" if logreg else "searched"
    if task != "linprobe":
        return ""
    if logreg:
        return "logreg"
    return "sweep" if config.get("sweep") is True else ""


def labels_of(config: dict) -> str:
    """The low-label setting of a run's config: 'N=10' (labels per class), 'F=0.1' (fraction of
    the training labels) or '' (all labels)."""
    n, f = config.get("labels_per_class"), config.get("label_fraction")
    if n is not None and not isinstance(n, bool):
        return f"N={int(n) if float(n).is_integer() else n}"
    if f is not None and not isinstance(f, bool):
        return f"F={float(f):g}"
    return ""


def labels_label(labels: str) -> str:
    """'N=10' -> 'N=10 labels/class'; 'F=0.1' -> 'F=0.1 of the labels'."""
    if labels.startswith("N="):
        return f"{labels} labels/class"
    if labels.startswith("F="):
        return f"{labels} of the labels"
    return labels


def _labels_sort(labels: str) -> tuple:
    """All labels first, then N ascending, then F ascending."""
    if not labels:
        return (0, 0.0)
    try:
        return (1 if labels.startswith("N=") else 2, float(labels[2:]))
    except ValueError:
        return (3, 0.0)


def protocol_label(task: str, protocol: str) -> str:
    """'fine-tune', 'linear (swept)', 'fine-tune (searched)'."""
    own = TASK_LABELS.get(task, task)
    return PROTOCOL_LABELS.get(protocol, own).format(task=own) if protocol else own


@dataclass(frozen=True)
class Column:
    task: str
    metric: str
    dataset: str
    blocks: float | None = None   # PER_K_TASKS only
    protocol: str = ""            # PROTOCOLS: '' = the task's own (paper) protocol
    labels: str = ""              # low-label setting: '', 'N=10', 'F=0.1' (labels_of)

    @property
    def key(self) -> str:
        """Stable machine name, e.g. 'partial/top1/shapes/K=1', 'linprobe/top1/shapes/sweep/N=10'
        (csv/json column names)."""
        k = f"/K={format_blocks(self.blocks)}" if self.task in PER_K_TASKS else ""
        extra = "".join(f"/{x}" for x in (self.protocol, self.labels) if x)
        return f"{self.task}/{self.metric}/{self.dataset}{k}{extra}"

    @property
    def variant(self) -> tuple[str, str]:
        """(protocol, labels): with task and dataset, what one table measures."""
        return (self.protocol, self.labels)

    @property
    def is_paper_protocol(self) -> bool:
        """The task's own protocol on all labels: the only cells compared with the paper."""
        return not self.protocol and not self.labels

    @property
    def header(self) -> str:
        """Human header that names the dataset, e.g. 'partial K=1 top-1 [shapes]',
        'linear (swept) top-1 [shapes, N=10 labels/class]'."""
        task = protocol_label(self.task, self.protocol)
        if self.task in PER_K_TASKS:
            task += f" K={format_blocks(self.blocks)}"
        metric = METRIC_LABELS.get(self.metric, self.metric)
        labels = f", {labels_label(self.labels)}" if self.labels else ""
        return f"{task} {metric} [{dataset_label(self.dataset)}{labels}]"

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
        protocol_i = PROTOCOLS.index(self.protocol) if self.protocol in PROTOCOLS else len(PROTOCOLS)
        return (task_i, self.is_paper_dataset, self.dataset.lower(), _labels_sort(self.labels), protocol_i,
                self.protocol, -1.0 if self.blocks is None else self.blocks, metric_i)
