"""A search trial (RunSpec.trial_holdout) of the dense tasks, COCO and ADE20K, at CPU scale: it
trains on part of the training images and scores the held-out rest, split by image
(maebench/data/heldout.py `by_image`), and never reads the reported (val) split -- a trial on
a copy of the data whose val split is poisoned scores exactly what it scores on the clean one."""
import json
import shutil

import pytest
import torch

from maebench.errors import MaebenchError
from maebench.runner import execute
from maebench.runspec import RunSpec
from maebench.tasks.table import TASKS

FRACTION = 0.25


def copy_of(src, tmp_path):
    return shutil.copytree(src, tmp_path / src.name)


def tiny_spec(task, data, micro, sets, **kw) -> RunSpec:
    return RunSpec(TASKS[task], backbone=micro, data=str(data), epochs=1, batch_size=4,
                   sets=("num_workers=0", "warmup_epochs=0", *sets), **kw)


def run(task, data, micro, sets, **kw):
    """One run of `task` through the runner; force, so the same run id is trained again."""
    (outcome,) = execute(tiny_spec(task, data, micro, sets, force=True, **kw))
    return outcome


def plain_run_fails(task, data, micro, sets, **kw):
    """The same run without trial_holdout reads the reported split: on poisoned data it fails."""
    with pytest.raises(MaebenchError):
        run(task, data, micro, sets, **kw)


# ---- COCO -----------------------------------------------------------------------------------
COCO_SETS = ("img_size=64", "eval_batch_size=4")


class PerfectDetector(torch.nn.Module):
    """Answers each image with the ground truth of `dataset` (an evaluation reader), in order."""

    def __init__(self, dataset):
        super().__init__()
        self.targets = iter([dataset[i][1] for i in range(len(dataset))])

    def forward(self, images):
        outputs = []
        for _ in images:
            t = next(self.targets)
            keep = t["iscrowd"] == 0
            outputs.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep], "scores": torch.ones(int(keep.sum())),
                            "masks": t["masks"][keep, None].float()})
        return outputs


def perfect_detector_scores(data, held, micro, tmp_path, **kw):
    """(the trial's recipe, its own evaluator's metrics for a detector that answers the
    held-out images' ground truth): AP 100 only if the evaluator scores those images against
    the training file's ground truth of exactly those images."""
    from types import SimpleNamespace

    (recipe,) = TASKS["coco"].recipes()(tiny_spec("coco", data, micro, COCO_SETS, **kw))
    recipe.setup(SimpleNamespace(out_dir=tmp_path))
    return recipe, recipe.evaluate(PerfectDetector(held))


def test_coco_trial_scores_held_out_training_images_and_never_reads_val(dense_sets, micro32, tmp_path, capsys):
    micro = micro32
    from maebench.data.layout import resolve_coco
    from maebench.tasks.coco import holdout_sets
    from maebench.tasks.coco.data import eval_transform

    data = copy_of(dense_sets["coco"], tmp_path)
    paths = resolve_coco(data)
    train_ids = sorted(im["id"] for im in json.loads(open(paths["train_json"]).read())["images"])

    # the split: by image, disjoint, the whole training file, ground truth of the held-out images only
    fit, held = holdout_sets(paths, eval_transform, FRACTION, seed=0)
    assert (len(fit), len(held)) == (6, 2)
    assert sorted(fit.ids + held.ids) == train_ids and not set(fit.ids) & set(held.ids)
    assert sorted(held.coco.imgs) == held.ids and {a["image_id"] for a in held.coco.dataset["annotations"]} <= set(held.ids)
    assert held.ann_file == paths["train_json"] and not held.train

    kw = dict(options={"neck": "simple-pyramid"}, trial_holdout=FRACTION)
    recipe, perfect = perfect_detector_scores(data, held, micro, tmp_path, **kw)
    assert recipe.train_set.ids == fit.ids and recipe.config["trial_holdout"] == FRACTION
    assert perfect["bbox/AP"] == pytest.approx(100.0) and perfect["segm/AP"] == pytest.approx(100.0)
    capsys.readouterr()
    clean = run("coco", data, micro, COCO_SETS, **kw)
    out = capsys.readouterr().out
    assert "6 train / held-out 2 of the 8 training images" in out and "coco eval (2 images," in out, out
    detections = json.loads(open(f"{clean.out_dir}/coco_results.json").read())
    assert {d["image_id"] for d in detections} <= set(held.ids)
    assert isinstance(clean.metrics["bbox/AP"], float) and isinstance(clean.metrics["segm/AP"], float)

    # poison the val split: garbage annotation file, every val image unreadable
    open(paths["val_json"], "w").write('{"images": [')
    for image in (data / "val").iterdir():
        image.write_bytes(b"not an image")
    poisoned = run("coco", data, micro, COCO_SETS, **kw)
    assert poisoned.run_id == clean.run_id and poisoned.metrics == clean.metrics
    assert json.loads(open(f"{poisoned.out_dir}/coco_results.json").read()) == detections
    assert perfect_detector_scores(data, held, micro, tmp_path, **kw)[1] == perfect
    plain_run_fails("coco", data, micro, COCO_SETS, options={"neck": "simple-pyramid"})


# ---- ADE20K ---------------------------------------------------------------------------------
ADE_SETS = ("img_size=32", "crop_size=32", "channels=16", "aux_channels=8")


def test_ade20k_trial_scores_held_out_training_images_and_never_reads_val(dense_sets, micro32, tmp_path, capsys):
    micro = micro32
    from maebench.data.ade20k import SegmentationPairs, resolve_ade20k
    from maebench.tasks.ade20k import holdout_split

    data = copy_of(dense_sets["ade20k"], tmp_path)

    clean = run("ade20k", data, micro, ADE_SETS, trial_holdout=FRACTION)
    out = capsys.readouterr().out
    assert "6 train / held-out 2 of the 8 training images" in out, out
    assert 0 <= clean.metrics["mIoU"] <= 100 and 0 < clean.metrics["aAcc"] <= 100

    # the split: by image, disjoint, the whole training split; the held-out part with the eval transforms
    train = SegmentationPairs(*resolve_ade20k(data, "training"), num_classes=8, transforms="train")
    fit, held = holdout_split(train, "eval", FRACTION, seed=0)
    assert (len(fit), len(held)) == (6, 2) and sorted(fit.pairs + held.pairs) == train.pairs
    assert (fit.transforms, held.transforms) == ("train", "eval")

    # poison the validation split: garbage label maps, then no validation folders at all
    for label in (data / "annotations" / "validation").iterdir():
        label.write_bytes(b"not a png")
    poisoned = run("ade20k", data, micro, ADE_SETS, trial_holdout=FRACTION)
    assert poisoned.run_id == clean.run_id and poisoned.metrics == clean.metrics
    plain_run_fails("ade20k", data, micro, ADE_SETS)
    shutil.rmtree(data / "images" / "validation")
    shutil.rmtree(data / "annotations" / "validation")
    assert run("ade20k", data, micro, ADE_SETS, trial_holdout=FRACTION).metrics == clean.metrics
