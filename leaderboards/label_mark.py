"""The † mark, one rule for every table that shows a classification result (the leaderboard's
summary and per-task tables in every format, and the demo's report): a backbone of the
`supervised` family scored on a classification task on the dataset it was pretrained on has
seen all of that dataset's labels, so its number is not a result of the task's label budget
(or of self-supervised pretraining) alone.

Decided from the results rows only: the family is the `backbone_family` the rows record
(leaderboards/families.py), the pretraining dataset is the dataset of the backbone's
`pretrain-*` rows in the same store. A supervised backbone with no pretraining row in the store
(one registered from a release file) has no known pretraining dataset and is not marked."""
from __future__ import annotations

from typing import Iterable

from maebench.leaderboards.columns import HEADLINE, canonical_dataset

MARK = "†"
LABELLED_FAMILY = "supervised"        # the family whose pretraining uses the labels
# tasks that score image classification (headline top-1): fine-tune, linear, partial, k-NN
CLASSIFICATION_TASKS = tuple(task for task, headline in HEADLINE.items() if "top1" in headline)
NOTE = (f"{MARK} = pretrained with all the labels of the dataset it is scored on (a supervised backbone on a "
        "classification task on its own pretraining dataset): not a result of the task's label budget alone.")


def pretraining_datasets(rows: Iterable) -> set[str]:
    """The datasets (canonical names) of a backbone's pretraining rows (tasks `pretrain-*`)."""
    return {canonical_dataset(r.dataset) for r in rows if str(r.task).startswith("pretrain-")}


def seen_all_labels(family: str, task: str, dataset: str | None, pretrained_on: Iterable[str]) -> bool:
    """Whether a result of `task` on `dataset`, by a backbone of `family` pretrained on the
    datasets `pretrained_on`, carries the mark."""
    return (family == LABELLED_FAMILY and task in CLASSIFICATION_TASKS
            and canonical_dataset(dataset) in {canonical_dataset(d) for d in pretrained_on})
