"""A perfect detector for COCO evaluation tests."""


def ground_truth_as_results(coco_gt) -> list[dict]:
    """Every non-crowd ground-truth object as a detection with score 1 and an RLE mask: a
    perfect detector, which must score AP 100 for boxes and masks (the evaluator's sanity check)."""
    from pycocotools import mask as mask_utils

    out = []
    for ann in coco_gt.dataset["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        rle = coco_gt.annToRLE(ann)
        if not isinstance(rle["counts"], (bytes, str)):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 1.0,
                    "bbox": [float(v) for v in ann["bbox"]],
                    "segmentation": {"size": [int(v) for v in rle["size"]], "counts": counts}})
    return out
