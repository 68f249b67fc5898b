"""CocoInstances against pycocotools read independently, and every bad-input case."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from maebench.data import shapes
from maebench.data.coco import CocoInstances, resolve_coco
from maebench.errors import MaebenchError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    shapes.prepare(out, shapes.ShapesOptions(coco_train_images=32, coco_val_images=16), kinds=("coco",))
    return out / "coco"


def reference(ann_file):
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


@pytest.mark.parametrize("split", ["train", "val"])
def test_targets_match_pycocotools(coco_dir, split):
    paths = resolve_coco(coco_dir)
    ds = CocoInstances(paths[f"{split}_images"], paths[f"{split}_json"], train=False)
    ref = reference(paths[f"{split}_json"])
    assert ds.ids == sorted(ref.getImgIds()) and len(ds) == len(ref.getImgIds())
    assert ds.cat_ids == [3, 7, 12, 40] and ds.num_classes == 4
    assert ds.cat_id_to_label == {3: 1, 7: 2, 12: 3, 40: 4}
    assert {ds.label_to_cat_id[ds.cat_id_to_label[c]] for c in ds.cat_ids} == set(ref.getCatIds())
    for index, image_id in enumerate(ds.ids):
        image, target = ds[index]
        anns = ref.loadAnns(ref.getAnnIds(imgIds=image_id))
        info = ref.loadImgs(image_id)[0]
        assert image.mode == "RGB" and image.size == (info["width"], info["height"])
        assert target["image_id"] == image_id
        n = len(anns)
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
        assert target["masks"].shape == (n, info["height"], info["width"]) and target["masks"].dtype == torch.uint8
        assert target["labels"].dtype == torch.int64 and target["iscrowd"].dtype == torch.int64
        for i, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            assert target["boxes"][i].tolist() == [x, y, x + w, y + h]
            assert np.array_equal(target["masks"][i].numpy(), ref.annToMask(ann))
            assert ds.label_to_cat_id[int(target["labels"][i])] == ann["category_id"]
            assert target["area"][i].item() == pytest.approx(ann["area"])
            assert target["iscrowd"][i].item() == ann["iscrowd"]


def test_train_drops_crowd_regions(coco_dir):
    paths = resolve_coco(coco_dir)
    ref = reference(paths["train_json"])
    crowd = [a for a in ref.dataset["annotations"] if a["iscrowd"]]
    assert crowd, "the generated set should contain crowd regions"
    ds = CocoInstances(paths["train_images"], paths["train_json"], train=True)
    assert ds.skipped == {"crowd": len(crowd), "degenerate_box": 0, "degenerate_polygon": 0}
    total = 0
    for index, image_id in enumerate(ds.ids):
        _, target = ds[index]
        expected = [a for a in ref.loadAnns(ref.getAnnIds(imgIds=image_id)) if not a["iscrowd"]]
        assert target["labels"].tolist() == [ds.cat_id_to_label[a["category_id"]] for a in expected]
        assert target["iscrowd"].sum() == 0
        total += len(expected)
    assert total == len(ref.dataset["annotations"]) - len(crowd)


def test_images_without_annotations_give_empty_targets(coco_dir):
    paths = resolve_coco(coco_dir)
    ds = CocoInstances(paths["val_images"], paths["val_json"], train=True)
    empty = [i for i, iid in enumerate(ds.ids) if not ds.coco.getAnnIds(imgIds=iid)]
    assert empty
    _, target = ds[empty[0]]
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 128, 128) and target["labels"].numel() == 0


def test_transforms_receive_image_and_target(coco_dir):
    paths = resolve_coco(coco_dir)
    ds = CocoInstances(paths["val_images"], paths["val_json"], train=False,
                       transforms=lambda img, tgt: (img.size, sorted(tgt)))
    assert ds[0] == ((128, 128), ["area", "boxes", "image_id", "iscrowd", "labels", "masks"])


# ---- hand-made files for the bad-input cases ---------------------------------------------

def write_set(root, images=None, annotations=None, categories=None, drop=()):
    """root/img/1.jpg (8x6) and root/ann.json built from the given pieces."""
    (root / "img").mkdir(exist_ok=True)
    Image.new("RGB", (8, 6), (10, 200, 30)).save(root / "img" / "1.jpg")
    data = {
        "images": images if images is not None else [{"id": 1, "file_name": "1.jpg", "height": 6, "width": 8}],
        "annotations": annotations if annotations is not None else [
            {"id": 5, "image_id": 1, "category_id": 9, "bbox": [1, 1, 3, 2], "area": 6, "iscrowd": 0,
             "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]}],
        "categories": categories if categories is not None else [{"id": 9, "name": "thing"}],
    }
    for key in drop:
        del data[key]
    (root / "ann.json").write_text(json.dumps(data))
    return root / "img", root / "ann.json"


def test_hand_made_polygon_matches_expectation(tmp_path):
    ds = CocoInstances(*write_set(tmp_path), train=True)
    _, target = ds[0]
    assert target["boxes"].tolist() == [[1, 1, 4, 3]] and target["labels"].tolist() == [1]
    assert ds.label_to_cat_id == {1: 9}


@pytest.mark.parametrize("change, message", [
    (dict(drop=("images",)), "missing 'images'"),
    (dict(drop=("categories",)), "missing 'categories'"),
    (dict(images=[{"id": 1, "file_name": "1.jpg", "height": 6, "width": 8}] * 2), "image id 1 is listed twice"),
    (dict(annotations=[{"id": 77, "image_id": 2, "category_id": 9, "bbox": [0, 0, 1, 1], "area": 1,
                        "segmentation": [[0, 0, 1, 0, 1, 1]]}]), "annotation id 77 refers to image id 2"),
    (dict(annotations=[{"id": 78, "image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1], "area": 1,
                        "segmentation": [[0, 0, 1, 0, 1, 1]]}]), "annotation id 78 has category id 4"),
    (dict(annotations=[{"id": 79, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1], "area": 1,
                        "segmentation": {"counts": [3, 2], "size": [6, 8]}}]), "annotation id 79: uncompressed RLE"),
])
def test_bad_annotation_files_name_the_file_and_id(tmp_path, change, message):
    images, ann = write_set(tmp_path, **change)
    with pytest.raises(MaebenchError, match=message) as err:
        CocoInstances(images, ann, train=True)
    assert str(ann) in str(err.value) and "\n" not in str(err.value)


def test_malformed_json_names_the_file(tmp_path):
    images, ann = write_set(tmp_path)
    ann.write_text('{"images": [')
    with pytest.raises(MaebenchError, match="malformed JSON") as err:
        CocoInstances(images, ann, train=False)
    assert str(ann) in str(err.value)


def test_missing_image_file_is_named_at_construction(tmp_path):
    images, ann = write_set(tmp_path)
    (images / "1.jpg").unlink()
    with pytest.raises(MaebenchError, match="not found") as err:
        CocoInstances(images, ann, train=False)
    assert str(images / "1.jpg") in str(err.value)


def test_corrupt_jpeg_is_named_on_load(tmp_path):
    images, ann = write_set(tmp_path)
    good = (images / "1.jpg").read_bytes()
    (images / "1.jpg").write_bytes(good[: len(good) // 2])
    ds = CocoInstances(images, ann, train=False)
    with pytest.raises(MaebenchError) as err:
        ds[0]
    assert str(images / "1.jpg") in str(err.value)


def test_image_of_the_wrong_size_is_named(tmp_path):
    images, ann = write_set(tmp_path)
    Image.new("RGB", (9, 6)).save(images / "1.jpg")
    with pytest.raises(MaebenchError, match="9x6 but") as err:
        CocoInstances(images, ann, train=False)[0]
    assert str(images / "1.jpg") in str(err.value)


def test_degenerate_annotations_are_counted_and_dropped_for_training(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 9, "bbox": [1, 1, 0, 2], "area": 0, "segmentation": [[1, 1, 1, 3, 1, 2]]},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2], "area": 0, "segmentation": [[1, 1, 3, 3]]},
        {"id": 3, "image_id": 1, "category_id": 9, "bbox": [0, 0, 8, 6], "area": 48, "iscrowd": 1,
         "segmentation": {"counts": [0, 48], "size": [6, 8]}},
        {"id": 4, "image_id": 1, "category_id": 9, "bbox": [1, 1, 3, 2], "area": 6, "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]},
    ]
    images, ann = write_set(tmp_path, annotations=anns)
    with pytest.warns(UserWarning, match="skipped 2 degenerate"):
        train = CocoInstances(images, ann, train=True)
    assert train.skipped == {"crowd": 1, "degenerate_box": 1, "degenerate_polygon": 1}
    assert train[0][1]["boxes"].tolist() == [[1, 1, 4, 3]]
    val = CocoInstances(images, ann, train=False)
    _, target = val[0]
    assert target["iscrowd"].tolist() == [0, 0, 1, 0]
    assert target["masks"][1].sum() == 0          # 2-point polygon: empty mask, not a box
    assert target["masks"][2].sum() == 48         # uncompressed RLE covering the image


def test_resolve_coco_layouts(tmp_path):
    c17 = tmp_path / "coco2017"
    (c17 / "annotations").mkdir(parents=True)
    for name in ("instances_train2017.json", "instances_val2017.json"):
        (c17 / "annotations" / name).write_text("{}")
    (c17 / "train2017").mkdir()
    with pytest.raises(MaebenchError, match="missing val2017"):
        resolve_coco(c17)
    (c17 / "val2017").mkdir()
    assert resolve_coco(c17) == {"train_json": str(c17 / "annotations/instances_train2017.json"),
                                 "val_json": str(c17 / "annotations/instances_val2017.json"),
                                 "train_images": str(c17 / "train2017"), "val_images": str(c17 / "val2017")}
    with pytest.raises(MaebenchError, match="not a COCO instances directory") as err:
        resolve_coco(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(MaebenchError, match="not found") as err:
        resolve_coco(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
