"""COCO files as annotation tools export them (tests/badinput/coco/quirk_*.json, written by
make_corpus.py): ids from 0 or repeated, category id 0, no area / iscrowd / bbox, RLE counts as a
list or a string, images without objects. Each is normalised by the reader, not refused: its
ground truth fed back as predictions, written with the file's own ids, scores AP 100 for boxes
and masks, the training reader sees the same objects as in the clean file, and `maebench data
check` says what was normalised in one counted line each."""
import contextlib
import importlib.util
import io
import json
import shutil
import warnings
from pathlib import Path

import pytest

from maebench.data import coco_json
from maebench.data.check import check
from maebench.tasks.coco.evaluate import load_ground_truth, score

CORPUS = Path(__file__).resolve().parent / "badinput"
_spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
make_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_corpus)
QUIRKS = sorted(make_corpus.coco_quirks())


def quirk_file(name: str) -> Path:
    return CORPUS / "coco" / f"quirk_{name}.json"


def test_the_corpus_files_are_what_make_corpus_writes():
    for name, data in make_corpus.coco_quirks().items():
        assert json.loads(quirk_file(name).read_text()) == data, name


def test_pycocotools_alone_underscores_ids_from_0():
    """The fault that makes the normalisation necessary: COCOeval called directly on the file."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = quirk_file("ids_from_0")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dets = gt.loadRes(make_corpus.ground_truth_as_predictions(json.loads(path.read_text())))
        ev = COCOeval(gt, dets, "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] < 0.99


@pytest.mark.parametrize("name", QUIRKS)
def test_ground_truth_as_predictions_scores_100_on_each_export_quirk(name):
    path = quirk_file(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gt = load_ground_truth(path)
    metrics = score(gt, make_corpus.ground_truth_as_predictions(json.loads(path.read_text())), source=str(path))
    assert metrics["bbox/AP"] == pytest.approx(100.0) and metrics["segm/AP"] == pytest.approx(100.0)


@pytest.mark.parametrize("name", QUIRKS)
def test_the_training_reader_sees_the_objects_of_the_clean_file(name):
    from maebench.data.coco import CocoInstances

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        quirky = CocoInstances(CORPUS / "coco" / "images", quirk_file(name), train=True)
    clean = CocoInstances(CORPUS / "coco" / "images", CORPUS / "coco" / "val.json", train=True)
    for image_id in clean.ids:
        a, b = quirky[quirky.ids.index(image_id)][1], clean[clean.ids.index(image_id)][1]
        assert a["boxes"].tolist() == b["boxes"].tolist()
        assert a["labels"].tolist() == b["labels"].tolist() and a["iscrowd"].tolist() == b["iscrowd"].tolist()
        assert (a["masks"] == b["masks"]).all()
        assert a["area"].tolist() == b["area"].tolist()   # the squares: the mask's pixel count = w * h
    assert quirky.label_to_cat_id == {1: 0 if name in ("category_0", "all") else 7}


def test_each_normalisation_is_one_counted_line_and_the_dataset_ids_stay():
    data = json.loads(quirk_file("all").read_text())
    notes = coco_json.normalise(data)
    assert notes == [
        "2 annotation ids renumbered (1 below 1, 0 repeated; now 1..2 in file order): COCOeval matches objects by "
        "id and reads 0 as unmatched",
        "2 annotations without 'iscrowd': read as 0 (not crowd)",
        "2 annotations without 'bbox': the box of the mask",
        "2 annotations without 'area': the pixel area of the mask",
        "2 objects with compressed RLE masks (counts a string): read as written",
        "1 category with id 0 ('square'): kept; training labels are 1..K, predictions carry the dataset's category ids",
    ]
    assert [a["id"] for a in data["annotations"]] == [1, 2]
    assert [a["image_id"] for a in data["annotations"]] == [1, 2] and data["categories"][0]["id"] == 0
    assert [a["bbox"] for a in data["annotations"]] == [[8, 8, 12, 12], [14, 10, 10, 10]]


def test_data_check_reports_the_normalisations_without_problems(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        shutil.copytree(CORPUS / "coco" / "images", root / split)
        shutil.copyfile(quirk_file("all" if split == "val" else "ids_repeated"),
                        root / "annotations" / f"instances_{split}.json")
    report = check("coco", root)
    assert report.problems == []
    notes = [n for n in report.notes if n.startswith("instances_val.json: ")]
    assert len(notes) == 6 and any("2 annotations without 'bbox'" in n for n in notes)
    assert "instances_train.json: 2 annotation ids renumbered (0 below 1, 1 repeated" in report.render()
