"""COCO evaluation against pycocotools called directly, ground truth fed back as predictions,
the category-id mapping, and every bad predictions file the evaluator must refuse."""
import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maebench.errors import MaebenchError
from coco_helpers import ground_truth_as_results
from maebench.tasks.coco.evaluate import (METRIC_NAMES, load_ground_truth, load_results,
                                 score, split_results, to_coco_results)

H = W = 40


def rect_mask(x, y, w, h):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y:y + h, x:x + w] = 1
    return m


def rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def uncompressed(mask):
    """COCO's uncompressed RLE (iscrowd regions): column-major runs starting with zeros."""
    flat = mask.flatten(order="F")
    runs = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])).tolist()
    return {"counts": [0] * int(flat[0] == 1) + runs, "size": [H, W]}


def poly(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    """The generated COCO set (non-contiguous ids, polygons, RLE, crowds), 64 px, 8 + 8 images."""
    from maebench.data import shapes
    out = tmp_path_factory.mktemp("shapes")
    shapes.prepare(out, shapes.ShapesOptions(coco_img_size=64, coco_train_images=8, coco_val_images=8), kinds=("coco",))
    return out / "coco"


@pytest.fixture
def hand_gt(tmp_path):
    """Two 40 x 40 images, categories 5 and 9 (non-contiguous), three objects and one crowd."""
    data = {
        "images": [{"id": 11, "file_name": "a.jpg", "height": H, "width": W},
                   {"id": 27, "file_name": "b.jpg", "height": H, "width": W}],
        "categories": [{"id": 5, "name": "five"}, {"id": 9, "name": "nine"}],
        "annotations": [
            {"id": 100, "image_id": 11, "category_id": 5, "bbox": [0, 0, 10, 10], "area": 100.0,
             "segmentation": poly(0, 0, 10, 10), "iscrowd": 0},
            {"id": 205, "image_id": 11, "category_id": 9, "bbox": [20, 20, 10, 10], "area": 100.0,
             "segmentation": poly(20, 20, 10, 10), "iscrowd": 0},
            {"id": 7, "image_id": 27, "category_id": 5, "bbox": [5, 5, 20, 10], "area": 200.0,
             "segmentation": poly(5, 5, 20, 10), "iscrowd": 0},
            {"id": 999, "image_id": 27, "category_id": 9, "bbox": [0, 30, 8, 8], "area": 64.0,
             "segmentation": uncompressed(rect_mask(0, 30, 8, 8)), "iscrowd": 1},
        ]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def hand_predictions():
    """IoUs with the ground truth: 0.5, 1.0, a false positive that outscores the match, 0.8,
    and one on the crowd region (ignored, neither true nor false positive)."""
    dets = [(11, 5, (0, 0, 10, 5), 0.9), (11, 9, (20, 20, 10, 10), 0.8), (11, 9, (0, 20, 5, 5), 0.95),
            (27, 5, (5, 5, 20, 8), 0.7), (27, 9, (0, 30, 8, 8), 0.6)]
    return [{"image_id": i, "category_id": c, "bbox": list(map(float, b)), "score": s, "segmentation": rle(rect_mask(*b))}
            for i, c, b, s in dets]


def direct(gt_path, dets, iou_type):
    """pycocotools as its README uses it, on the same ground truth and detections."""
    gt = COCO(str(gt_path))
    dt = gt.loadRes(copy.deepcopy(dets))
    ev = COCOeval(gt, dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [None if v < 0 else 100 * v for v in ev.stats[:6]]


def test_hand_made_predictions_match_pycocotools(hand_gt):
    preds = hand_predictions()
    ours = score(load_ground_truth(hand_gt), preds)
    boxes_only = [{k: v for k, v in p.items() if k != "segmentation"} for p in preds]
    masks_only = [{k: v for k, v in p.items() if k != "bbox"} for p in preds]
    assert [ours[f"bbox/{n}"] for n in METRIC_NAMES] == pytest.approx(direct(hand_gt, boxes_only, "bbox"))
    assert [ours[f"segm/{n}"] for n in METRIC_NAMES] == pytest.approx(direct(hand_gt, masks_only, "segm"))
    # by hand at IoU 0.5: category 5 finds both objects (AP 1); category 9 ranks a false
    # positive above its one match (AP 0.5); the crowd hit is ignored -> mean 0.75
    assert ours["bbox/AP50"] == pytest.approx(75.0)
    assert ours["bbox/AP75"] < ours["bbox/AP50"]          # the IoU-0.5 match fails at 0.75
    assert ours["bbox/APl"] is None and ours["bbox/APm"] is None   # no GT that large: -1, stored as None


def test_ground_truth_as_predictions_scores_100(hand_gt):
    gt = load_ground_truth(hand_gt)
    metrics = score(gt, ground_truth_as_results(gt))
    assert metrics["bbox/AP"] == metrics["segm/AP"] == 100.0
    assert metrics["bbox/AP50"] == metrics["segm/AP75"] == metrics["segm/APs"] == 100.0


def test_ground_truth_of_the_generated_set_scores_100(coco_set):
    from maebench.data.layout import resolve_coco
    gt = load_ground_truth(resolve_coco(coco_set)["val_json"])
    metrics = score(gt, ground_truth_as_results(gt))
    assert metrics["bbox/AP"] == pytest.approx(100.0) and metrics["segm/AP"] == pytest.approx(100.0)


def test_no_detections_score_zero_not_undefined(hand_gt):
    metrics = score(load_ground_truth(hand_gt), [])
    assert metrics["bbox/AP"] == 0.0 and metrics["segm/AP"] == 0.0


def test_box_only_results_score_boxes_only(hand_gt):
    preds = [{k: v for k, v in p.items() if k != "segmentation"} for p in hand_predictions()]
    metrics = score(load_ground_truth(hand_gt), preds)
    assert "bbox/AP" in metrics and not any(k.startswith("segm/") for k in metrics)


def test_polygon_and_uncompressed_masks_are_accepted(hand_gt):
    gt = load_ground_truth(hand_gt)
    preds = hand_predictions()
    preds[0]["segmentation"] = poly(0, 0, 10, 5)
    preds[1]["segmentation"] = uncompressed(rect_mask(20, 20, 10, 10))
    assert score(gt, preds)["segm/AP"] == pytest.approx(score(gt, hand_predictions())["segm/AP"], abs=1e-6)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p[1].update(category_id=6), r"detection #1 \(image_id 11\) has category_id 6, which the ground truth does not declare"),
    (lambda p: p[2].update(image_id=12), r"detection #2 has image_id 12, which is not in the ground truth"),
    (lambda p: p[0].pop("score"), r"detection #0 \(image_id 11\) needs a finite numeric 'score'"),
    (lambda p: p[0].update(score=float("nan")), r"needs a finite numeric 'score'"),
    (lambda p: p[3].update(bbox=[1, 2, 3]), r"detection #3 .* needs 'bbox' \[x, y, width, height\]"),
    (lambda p: p[3].update(bbox=[1, 2, -3, 4]), r"width, height >= 0"),
    (lambda p: p[4].update(segmentation=rle(np.zeros((20, 20), np.uint8))), r"detection #4 .* mask size \[20, 20\] differs"),
    (lambda p: p[4].update(segmentation={"size": [H, W], "counts": "@@@garbage"}), r"unreadable compressed RLE counts \(they do not describe a 40x40 mask"),
    (lambda p: p[4].update(segmentation={"size": [H, W], "counts": rle(rect_mask(0, 0, 20, 20))["counts"] + "1"}), r"unreadable compressed RLE"),
    (lambda p: p[1].pop("segmentation"), r"4 of 5 detections have a 'segmentation'"),
    (lambda p: (p[0].pop("bbox"), p[0].pop("segmentation")), r"neither 'bbox' nor 'segmentation'"),
    (lambda p: p.append("x"), r"detection #5 is not an object"),
])
def test_bad_predictions_are_one_line_errors(hand_gt, mutate, message):
    preds = hand_predictions()
    mutate(preds)
    with pytest.raises(MaebenchError, match=message) as e:
        score(load_ground_truth(hand_gt), preds, source="p.json")
    assert str(e.value).startswith("p.json: ") and "\n" not in str(e.value)


def test_results_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1,')
    with pytest.raises(MaebenchError, match=r"bad.json: malformed JSON at line 1"):
        load_results(bad)
    bad.write_text('{"image_id": 1}')
    with pytest.raises(MaebenchError, match=r"bad.json: a COCO results file is a JSON list"):
        load_results(bad)
    with pytest.raises(MaebenchError, match="COCO results file not found"):
        load_results(tmp_path / "missing.json")


def test_ground_truth_without_objects_is_an_error_not_an_ap(hand_gt, tmp_path):
    data = json.loads(hand_gt.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["iscrowd"]]
    path = tmp_path / "crowd_only.json"
    path.write_text(json.dumps(data))
    with pytest.raises(MaebenchError, match="holds no \\(non-crowd\\) objects"):
        score(load_ground_truth(path), [])


def test_model_outputs_become_coco_results_with_dataset_ids():
    """Contiguous labels 1..K -> the dataset's category ids; xyxy -> xywh; masks -> RLE."""
    import torch
    probs = torch.zeros(2, 1, H, W)
    probs[0, 0, 0:10, 0:10] = 0.9
    probs[1, 0, 20:30, 20:25] = 0.6
    probs[1, 0, 30:32, 20:25] = 0.4                     # below the 0.5 threshold
    out = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 25.0, 30.0]]),
           "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.3]), "masks": probs}
    res = to_coco_results([out, {k: v[:0] for k, v in out.items()}], [11, 27], {1: 5, 2: 9})
    assert [(r["image_id"], r["category_id"], r["bbox"]) for r in res] == [
        (11, 5, [0.0, 0.0, 10.0, 10.0]), (11, 9, [20.0, 20.0, 5.0, 10.0])]
    dec = mask_utils.decode({"size": res[1]["segmentation"]["size"], "counts": res[1]["segmentation"]["counts"].encode()})
    assert dec.sum() == 50 and dec[20:30, 20:25].all()
    json.dumps(res)                                       # plain JSON types only


def test_category_ids_round_trip_through_labels(coco_set):
    """Non-contiguous ids (3, 7, 12, 40) -> labels 1..4 -> the same ids; targets carry labels
    whose ids are those of the image's annotations."""
    from maebench.data.coco import CocoInstances
    from maebench.data.layout import resolve_coco

    p = resolve_coco(coco_set)
    ds = CocoInstances(p["val_images"], p["val_json"], train=False)
    assert ds.cat_ids == [3, 7, 12, 40]
    assert sorted(ds.label_to_cat_id) == [1, 2, 3, 4]
    assert all(ds.cat_id_to_label[ds.label_to_cat_id[label]] == label for label in ds.label_to_cat_id)
    assert all(ds.label_to_cat_id[ds.cat_id_to_label[c]] == c for c in ds.cat_ids)
    for i in range(len(ds)):
        _, target = ds[i]
        anns = ds.coco.imgToAnns.get(target["image_id"], [])
        assert [ds.label_to_cat_id[int(v)] for v in target["labels"]] == [a["category_id"] for a in anns]


def test_split_results_drops_boxes_from_the_mask_list(hand_gt):
    """Mask AP must use mask areas for small/medium/large: the mask list carries no 'bbox'."""
    boxes, masks = split_results(hand_predictions(), load_ground_truth(hand_gt))
    assert all("bbox" in b and "segmentation" not in b for b in boxes)
    assert all("segmentation" in m and "bbox" not in m for m in masks)


class _BoxPerImage(__import__("torch").nn.Module):
    """A stand-in detector: one box per image (category label 1), no masks."""

    def forward(self, images):
        import torch
        return [{"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0]]), "labels": torch.tensor([1]),
                 "scores": torch.tensor([0.5])} for _ in images]


def test_sharded_evaluation_sees_every_image_once(coco_set, tmp_path, monkeypatch):
    """Two ranks simulated: each predicts its ShardSampler share, rank 0 gathers both shares,
    scores exactly what one process scores, and refuses a gather that counts an image twice."""
    import torch

    from maebench import distributed as dist
    from maebench.data.coco import CocoInstances
    from maebench.data.layout import resolve_coco
    from maebench.tasks.coco.data import eval_transform
    from maebench.tasks.coco.evaluate import RESULTS_FILE, make_evaluator, predict

    p = resolve_coco(coco_set)
    ds = CocoInstances(p["val_images"], p["val_json"], train=False, transforms=eval_transform)
    model, cpu = _BoxPerImage(), torch.device("cpu")
    single = make_evaluator(ds, out_dir=None, device=cpu, log=lambda *_: None)(model)

    other_rank = predict(model, ds, cpu, indices=range(1, len(ds), 2))
    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "rank", lambda: 0)
    monkeypatch.setattr(dist, "all_gather_objects", lambda mine: [mine, other_rank])
    sharded = make_evaluator(ds, out_dir=tmp_path, device=cpu, log=lambda *_: None)(model)
    assert sharded == single and sharded["bbox/AP"] is not None
    assert len(json.loads((tmp_path / RESULTS_FILE).read_text())) == len(ds)

    monkeypatch.setattr(dist, "all_gather_objects", lambda mine: [mine, mine])
    with pytest.raises(MaebenchError, match=f"saw {len(ds)} images .* of the {len(ds)} in"):
        make_evaluator(ds, out_dir=None, device=cpu, log=lambda *_: None)(model)


def test_degenerate_ground_truth_polygons_are_not_read_as_boxes(hand_gt, tmp_path):
    """A 2-point polygon [[0, 0, 10, 10]] is what pycocotools would read as the box 0,0,10,10;
    here it is an empty mask (a counted warning), so a 10 x 10 square cannot match it."""
    data = json.loads(hand_gt.read_text())
    data["annotations"][0]["segmentation"] = [[0, 0, 10, 10]]
    path = tmp_path / "degenerate.json"
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="1 annotations have polygon parts with fewer than 3 points"):
        gt = load_ground_truth(path)
    square = {"image_id": 11, "category_id": 5, "score": 0.9, "bbox": [0.0, 0.0, 10.0, 10.0],
              "segmentation": rle(rect_mask(0, 0, 10, 10))}
    metrics = score(gt, [square])
    # the box finds 1 of the 2 category-5 objects (precision 1 on 51 of the 101 recall points;
    # category 9 scores 0), but the mask matches nothing
    assert metrics["bbox/AP50"] == pytest.approx(100 * 51 / 101 / 2)
    assert metrics["segm/AP50"] == 0.0
    assert gt.annToMask(gt.anns[100]).sum() == 0
