"""The data side of the classification tasks: the dataset directory (checked before any run
row exists), the seeded low-label subset of its training split, and each recipe's transforms."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from maebench.data import dataset_name
from maebench.data.imagefolder import ImageFolder, stratified_subset
from maebench.errors import UsageError


@dataclass
class ClassificationData:
    """One ImageFolder dataset as a task uses it: the labelled training subset and the split it is
    scored on: the val split, or, in a search trial, the held-out part of the labelled subset."""
    root: Path
    name: str                    # short dataset name for result rows ("shapes", "fashion-mnist", ...)
    classes: list[str]
    train_indices: list[int]     # into the train split: the low-label subset, or every image
    train_targets: list[int]     # labels of train_indices, same order
    n_train_total: int           # images in the train split before subsetting
    n_val: int                   # images scored
    held_out: list[int] | None = None   # a search trial's scored images: indices into the train split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def train_set(self, transform) -> Dataset:
        full = ImageFolder(self.root, "train", transform=transform)
        return full if len(self.train_indices) == len(full) else full.subset(self.train_indices)

    def val_set(self, transform) -> Dataset:
        if self.held_out is not None:                  # a trial never opens the reported split
            return ImageFolder(self.root, "train", transform=transform).subset(self.held_out)
        return ImageFolder(self.root, "val", transform=transform)


def open_data(data_dir: str | None, *, labels_per_class: int | None = None,
              label_fraction: float | None = None, seed: int = 0,
              holdout: float | None = None, score_held_out: bool = True) -> ClassificationData:
    """Scan both splits and choose the labelled subset; every problem raises before training.
    `holdout` (a search trial, maebench/search.py): train on the labelled subset less that
    fraction, held out by class with the seed (maebench/data/heldout.py), and score on the
    held-out part (or, `score_held_out` false, a reused trial: on the val split)."""
    if labels_per_class is not None and label_fraction is not None:
        raise UsageError("give at most one of --labels-per-class and --label-fraction")
    if data_dir:
        root = Path(data_dir).expanduser()
    else:
        from maebench.data import default_dataset
        root = default_dataset("classification")
    train = ImageFolder(root, "train")        # raises MaebenchError naming a missing/empty path
    val = ImageFolder(root, "val")
    if labels_per_class is not None or label_fraction is not None:
        # the subset's seed is the run's seed: seeds differ in which images carry labels too,
        # which is what a low-label result averaged over seeds should vary
        indices = stratified_subset(train.targets, labels_per_class=labels_per_class,
                                    fraction=label_fraction, seed=seed)
    else:
        indices = list(range(len(train)))
    held = None
    if holdout is not None:
        from maebench.data.heldout import stratified
        fit, held_pos = stratified([train.targets[i] for i in indices], holdout, seed, train.classes)
        indices, held = [indices[p] for p in fit.tolist()], [indices[p] for p in held_pos.tolist()]
        held = held if score_held_out else None
    return ClassificationData(root=root, name=dataset_name(root), classes=list(train.classes),
                              train_indices=indices, train_targets=[train.targets[i] for i in indices],
                              n_train_total=len(train), n_val=len(held) if held is not None else len(val),
                              held_out=held)


# ---- transforms ---------------------------------------------------------------------------
def eval_transform(cfg: dict, mean, std):
    from maebench.data.transforms import classification_eval
    return classification_eval(cfg["img_size"], mean, std, crop_pct=cfg["eval_crop_pct"])


def probe_train_transform(cfg: dict, mean, std):
    """Linear probe (Table 10): random-resized crop + flip, or the fixed eval crop (augment false)."""
    if not cfg["augment"]:
        return eval_transform(cfg, mean, std)
    from maebench.data.transforms import classification_train
    return classification_train(cfg["img_size"], mean, std, scale=tuple(cfg["aug"]["scale"]))


def finetune_train_transform(cfg: dict, mean, std):
    """Fine-tuning (Table 9): random-resized crop (bicubic), flip, RandAugment, random erasing,
    no colour jitter, as the released MAE recipe builds it."""
    from maebench.classification import train_transform
    aug = cfg["aug"]
    return train_transform(cfg["img_size"], mean, std, scale=aug["scale"], hflip=aug["hflip"],
                           rand_augment=aug["rand_augment"], reprob=aug["reprob"], remode=aug["remode"])
