"""The "fashion" world (`maebench data prepare fashion`) on a reduced size: the COCO files load in
pycocotools and score AP 100 with their own ground truth, the ADE20K label maps hold only the
declared classes and agree with the COCO masks of the same canvases, no training item reaches
validation, the same seed gives the same bytes, and bad sources fail in one line."""
import gzip
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from maebench.cli import main as maebench
from maebench.data import fashion_mnist
from maebench.data.fashion_world import FashionOptions, prepare

SOURCE = fashion_mnist.DEFAULT_SOURCE
pytestmark = pytest.mark.skipif(not (SOURCE / "train-images-idx3-ubyte.gz").is_file(),
                                reason="Debian package dataset-fashion-mnist not installed")
SMALL = FashionOptions(train_per_class=3, val_per_class=2, coco_train_images=24, coco_val_images=12,
                       ade_train_images=24, ade_val_images=12)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("fashion")
    prepare(out, SMALL, log=lambda *a: None)
    return out


def _coco(world, split):
    from pycocotools.coco import COCO
    return COCO(str(world / "coco" / "annotations" / f"instances_{split}.json"))


@pytest.mark.parametrize("split", ["train", "val"])
def test_ground_truth_fed_back_as_predictions_scores_ap_100_in_pycocotools(world, split):
    from pycocotools.cocoeval import COCOeval
    gt = _coco(world, split)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "segmentation": a["segmentation"], "score": 1.0} for a in gt.dataset["annotations"]]
    for iou_type in ("bbox", "segm"):
        ev = COCOeval(gt, gt.loadRes(json.loads(json.dumps(dets))), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0), iou_type


def test_coco_files_have_non_contiguous_categories_both_mask_encodings_and_boxes_from_the_masks(world):
    gt = _coco(world, "train")
    ids = sorted(gt.cats)
    assert len(ids) == 10 and ids != list(range(ids[0], ids[0] + 10))
    anns = gt.dataset["annotations"]
    assert any(isinstance(a["segmentation"], list) for a in anns)
    assert any(isinstance(a["segmentation"], dict) for a in anns)
    for a in anns:
        mask = gt.annToMask(a).astype(bool)
        ys, xs = np.nonzero(mask)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert a["area"] == mask.sum() > 0
    images = {i["id"]: i for i in gt.dataset["images"]}
    per_image = {}
    for a in anns:
        per_image.setdefault(a["image_id"], []).append(gt.annToMask(a))
    assert max(len(v) for v in per_image.values()) >= 2
    for iid, masks in per_image.items():  # occlusion: an item's visible pixels belong to it alone
        assert np.stack(masks).sum(0).max() == 1, images[iid]["file_name"]


def test_ade_label_maps_hold_declared_classes_only_and_equal_the_coco_masks_of_the_same_canvas(world):
    meta = json.loads((world / "ade20k" / "meta.json").read_text())
    assert meta["num_classes"] == 10 and meta["reduce_zero_label"] is True
    gt = _coco(world, "val")
    cat_to_label = {c: i + 1 for i, c in enumerate(sorted(gt.cats))}
    seen = set()
    for i, image_id in enumerate(sorted(gt.imgs)):
        label = np.asarray(Image.open(world / "ade20k" / "annotations" / "validation" / f"ADE_val_{i + 1:08d}.png"))
        seen |= set(np.unique(label).tolist())
        expected = np.zeros_like(label)
        for a in gt.imgToAnns[image_id]:
            expected[gt.annToMask(a).astype(bool)] = cat_to_label[a["category_id"]]
        assert np.array_equal(label, expected)
    assert seen <= set(range(11)) and 0 in seen and len(seen) > 3
    for path in (world / "ade20k" / "annotations" / "training").glob("*.png"):
        assert np.asarray(Image.open(path)).max() <= 10


def test_no_training_item_appears_in_validation(world):
    items = {split: {a["item"] for a in _coco(world, split).dataset["annotations"]} for split in ("train", "val")}
    assert all(i.startswith("train:") for i in items["train"])
    assert all(i.startswith("t10k:") for i in items["val"])
    # and by pixels: every validation item is an image of the test file, none of the training file
    train_images, _ = fashion_mnist.load_split(*fashion_mnist.find_sources(None)["train"])
    test_images, _ = fashion_mnist.load_split(*fashion_mnist.find_sources(None)["val"])
    train_bytes = {img.tobytes() for img in train_images}
    for item in items["val"]:
        assert test_images[int(item.split(":")[1])].tobytes() not in train_bytes


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_canvases(world, tmp_path):
    again = tmp_path / "again"
    prepare(again, SMALL, log=lambda *a: None)
    files = sorted(p.relative_to(world) for p in world.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (world / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    prepare(other, FashionOptions(**{**SMALL.__dict__, "seed": 1}), kinds=("coco",), log=lambda *a: None)
    rel = "coco/annotations/instances_val.json"
    assert (other / rel).read_bytes() != (world / rel).read_bytes()


def test_a_missing_package_is_one_line_naming_it_the_install_command_and_the_option(tmp_path, capsys):
    code = maebench(["data", "prepare", "fashion", "--out", str(tmp_path / "out"),
                     "--fashion-dir", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "dataset-fashion-mnist" in err and "apt-get install" in err and "--fashion-dir" in err
    assert not (tmp_path / "out").exists()


def test_a_truncated_idx_file_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for p in SOURCE.glob("*-ubyte.gz"):
        shutil.copy(p, src / p.name)
    raw = gzip.decompress((src / "t10k-images-idx3-ubyte.gz").read_bytes())
    (src / "t10k-images-idx3-ubyte.gz").unlink()
    (src / "t10k-images-idx3-ubyte").write_bytes(raw[: len(raw) // 2])
    code = maebench(["data", "prepare", "fashion", "--out", str(tmp_path / "out"), "--fashion-dir", str(src),
                     "--train-per-class", "2", "--coco-train-images", "4", "--ade-train-images", "4"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "t10k-images-idx3-ubyte" in err
    assert not (tmp_path / "out").exists()


def test_an_interrupted_set_is_rebuilt_and_a_complete_one_kept(world, tmp_path):
    out = tmp_path / "w"
    shutil.copytree(world, out)
    (out / "coco" / "meta.json").unlink()                                # killed before its meta was written
    (out / ".ade20k.tmp-x").mkdir()                                      # a killed run's temporary directory
    shutil.rmtree(out / "ade20k")
    kept = (out / "classification" / "meta.json").stat().st_mtime_ns
    lines = []
    prepare(out, SMALL, log=lines.append)
    assert any("complete, kept" in l and "classification" in l for l in lines)
    assert (out / "classification" / "meta.json").stat().st_mtime_ns == kept
    for rel in ("coco/annotations/instances_val.json", "ade20k/annotations/validation/ADE_val_00000001.png"):
        assert (out / rel).read_bytes() == (world / rel).read_bytes()
    assert not list(out.glob(".*"))
