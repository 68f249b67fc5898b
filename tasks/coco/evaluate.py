"""COCO evaluation: pycocotools COCOeval for boxes and masks, the results JSON, and the checks
that keep a bad predictions file from turning into a plausible-looking AP.

Metrics are stored as `bbox/AP`, `bbox/AP50`, `bbox/AP75`, `bbox/APs`, `bbox/APm`, `bbox/APl`
and the same under `segm/`, in percent. COCOeval reports -1 for a size range without any
ground truth (e.g. no large objects in 128 px images); that is stored as None, never as a number.

Two details follow detectron2's COCOEvaluator, because pycocotools gets them subtly wrong:
  - mask AP is computed from results *without* their 'bbox', otherwise COCO uses the box area
    to decide small / medium / large for a mask;
  - an empty results list is scored as 0 AP (loadRes would crash on it), not skipped.

Nothing in this module imports torch at import time: `maebench run --task coco
--eval-predictions FILE.json` re-scores a saved file with pycocotools alone.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any, Callable

from maebench.data import coco_json
from maebench.errors import MaebenchError

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")   # COCOeval.stats[0:6]
IOU_TYPES = ("bbox", "segm")
RESULTS_FILE = "coco_results.json"


# ---- ground truth ------------------------------------------------------------------------


def drop_degenerate_polygons(coco_gt, source: str = "ground truth") -> int:
    """Remove polygon parts with fewer than 3 points from the ground truth, in place; returns
    how many annotations changed (with a counted warning).

    pycocotools reads a first part of exactly 4 numbers as a *box* and fails on shorter ones,
    so such a mask would be scored as a rectangle that nobody annotated. Without its degenerate
    parts the object keeps its box (box AP is unchanged) and its mask is what remains, or empty
    when nothing does -- the object can then only be missed, as the training reader sees it."""
    changed = 0
    for ann in coco_gt.dataset["annotations"]:
        seg = ann.get("segmentation")
        if isinstance(seg, list) and any(len(part) < 6 for part in seg):
            img = coco_gt.imgs[ann["image_id"]]
            kept = [part for part in seg if len(part) >= 6]
            ann["segmentation"] = kept or {"size": [img["height"], img["width"]],
                                           "counts": [img["height"] * img["width"]]}   # all background
            changed += 1
    if changed:
        import warnings
        warnings.warn(f"{source}: {changed} annotations have polygon parts with fewer than 3 points; "
                      "those parts are ignored for mask AP (boxes unchanged)", stacklevel=2)
    return changed


def load_ground_truth(ann_file: str | os.PathLike):
    """COCO of a validated annotation file (maebench.data.coco_json names any fault), with
    degenerate polygon parts dropped (drop_degenerate_polygons)."""

    coco = coco_json.make_coco(coco_json.load(ann_file))
    drop_degenerate_polygons(coco, str(ann_file))
    return coco


# ---- results files -----------------------------------------------------------------------
def load_results(path: str | os.PathLike) -> list:
    """A COCO results file: a JSON list of {image_id, category_id, score, bbox and/or segmentation}."""
    p = Path(path)
    data = coco_json.read_json(p, "COCO results file")
    if not isinstance(data, list):
        raise MaebenchError(f"{p}: a COCO results file is a JSON list of detections, got a {type(data).__name__}")
    return data


def write_results(results: list[dict], path: str | os.PathLike) -> None:
    """Write atomically, so a crash never leaves half a results file next to a finished run."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results))
    os.replace(tmp, path)


def _finite(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def rle_string_runs(s: str) -> list[int] | None:
    """The run lengths of a COCO compressed-RLE string (pycocotools' rleFrString), or None when
    the string is not one. pycocotools decodes without any bounds check, so runs that do not
    add up to height * width would write past its buffer: they are checked here first."""
    runs: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                return None                       # truncated in the middle of a number
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)                # sign extension
        if len(runs) > 2:
            x += runs[-2]                         # runs after the second are stored as differences
        runs.append(x)
    return runs


def _compressed_rle(seg, h: int, w: int, where: str, check_rle: bool = True) -> dict:
    """Polygons, uncompressed or compressed RLE -> compressed RLE with str counts and the image's size."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        parts = [p for p in seg if isinstance(p, list) and len(p) >= 6 and all(_finite(v) for v in p)]
        if len(parts) != len(seg) or any(len(p) % 2 for p in parts):
            raise MaebenchError(f"{where}: polygon segmentation needs lists of >= 3 (x, y) points")
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, h, w))
    elif isinstance(seg, dict) and isinstance(seg.get("size"), list) and "counts" in seg:
        size = seg["size"]
        if not (len(size) == 2 and all(_finite(v) for v in size) and [int(v) for v in size] == [h, w]):
            raise MaebenchError(f"{where}: mask size {seg['size']} differs from the image's [{h}, {w}]")
        counts = seg["counts"]
        if isinstance(counts, list):
            if not all(isinstance(v, int) and v >= 0 for v in counts) or sum(counts) != h * w:
                raise MaebenchError(f"{where}: uncompressed RLE counts must be non-negative and sum to {h * w}")
            rle = mask_utils.frPyObjects(seg, h, w)
        elif isinstance(counts, str) and counts:
            if check_rle:
                runs = rle_string_runs(counts)
                if runs is None or min(runs) < 0 or sum(runs) != h * w:
                    raise MaebenchError(f"{where}: unreadable compressed RLE counts (they do not describe "
                                        f"a {h}x{w} mask)")
            rle = {"size": [h, w], "counts": counts.encode("ascii")}
        else:
            raise MaebenchError(f"{where}: RLE 'counts' must be a non-empty string or a list of integers")
    else:
        raise MaebenchError(f"{where}: segmentation must be an RLE object or a list of polygons")
    counts = rle["counts"]
    return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def split_results(results: list, coco_gt, source: str = "results",
                  trusted: bool = False) -> tuple[list[dict], list[dict] | None]:
    """Validate detections against the ground truth and split them into the box list and the
    mask list that COCOeval scores (the mask list is None when no detection has a mask).

    Each fault -- an image or category the ground truth does not have, a missing or non-finite
    score, a malformed box or mask, a mask of the wrong size -- is a one-line error naming the
    source and the entry, because pycocotools would either crash with a bare assert or, for an
    unknown category, silently score nothing. `trusted` (masks encoded by pycocotools in this
    process) skips the pure-Python walk over compressed RLE strings, the one slow check."""
    imgs, cats = coco_gt.imgs, coco_gt.cats
    boxes, masks, with_mask = [], [], 0
    for i, r in enumerate(results):
        where = f"{source}: detection #{i}"
        if not isinstance(r, dict):
            raise MaebenchError(f"{where} is not an object")
        iid, cid = r.get("image_id"), r.get("category_id")
        if isinstance(iid, bool) or iid not in imgs:
            raise MaebenchError(f"{where} has image_id {iid!r}, which is not in the ground truth")
        where = f"{where} (image_id {iid})"
        if isinstance(cid, bool) or cid not in cats:
            raise MaebenchError(f"{where} has category_id {cid!r}, which the ground truth does not declare "
                                f"(valid: {sorted(cats)})")
        if not _finite(r.get("score")):
            raise MaebenchError(f"{where} needs a finite numeric 'score', got {r.get('score')!r}")
        h, w = imgs[iid]["height"], imgs[iid]["width"]
        seg = None
        if "segmentation" in r:
            seg = _compressed_rle(r["segmentation"], h, w, where, check_rle=not trusted)
            with_mask += 1
        if "bbox" in r:
            bb = r["bbox"]
            if not (isinstance(bb, list) and len(bb) == 4 and all(_finite(v) for v in bb) and bb[2] >= 0 and bb[3] >= 0):
                raise MaebenchError(f"{where} needs 'bbox' [x, y, width, height] with width, height >= 0, got {bb!r}")
            bb = [float(v) for v in bb]
        elif seg is not None:
            from pycocotools import mask as mask_utils
            bb = [float(v) for v in mask_utils.toBbox({"size": seg["size"], "counts": seg["counts"].encode("ascii")})]
        else:
            raise MaebenchError(f"{where} has neither 'bbox' nor 'segmentation'")
        base = {"image_id": iid, "category_id": cid, "score": float(r["score"])}
        boxes.append({**base, "bbox": bb})
        if seg is not None:
            masks.append({**base, "segmentation": seg})
    if with_mask and with_mask != len(results):
        raise MaebenchError(f"{source}: {with_mask} of {len(results)} detections have a 'segmentation'; "
                            "mask AP needs one on every detection (or on none, for box AP only)")
    return boxes, (masks if with_mask or not results else None)


# ---- scoring -------------------------------------------------------------------------------
def _no_detections(coco_gt):
    return coco_json.make_coco({"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
                           "annotations": []})


def _cocoeval(coco_gt, dets: list[dict], iou_type: str) -> list[float]:
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets)) if dets else _no_detections(coco_gt)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:len(METRIC_NAMES)]]


def score(coco_gt, results: list, source: str = "results", trusted: bool = False) -> dict[str, Any]:
    """{'bbox/AP': ..., 'segm/APl': ...} in percent (None where COCO reports -1: no ground truth
    in that size range). `results` is a list of COCO detections, validated here."""
    if not any(not a.get("iscrowd", 0) for a in coco_gt.dataset["annotations"]):
        raise MaebenchError(f"the ground truth of {source} holds no (non-crowd) objects: AP is undefined")
    boxes, masks = split_results(results, coco_gt, source, trusted)
    metrics: dict[str, Any] = {}
    for iou_type, dets in (("bbox", boxes), ("segm", masks)):
        if dets is None:
            continue
        for name, v in zip(METRIC_NAMES, _cocoeval(coco_gt, dets, iou_type)):
            metrics[f"{iou_type}/{name}"] = None if v < 0 else 100.0 * v
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    """'bbox AP 41.2 AP50 ... | segm AP 37.0 ...' for the log."""
    parts = []
    for t in IOU_TYPES:
        if f"{t}/AP" in metrics:
            vals = " ".join(f"{n} {'-' if metrics[f'{t}/{n}'] is None else format(metrics[f'{t}/{n}'], '.1f')}"
                            for n in METRIC_NAMES)
            parts.append(f"{t} {vals}")
    return " | ".join(parts)


# ---- model predictions ---------------------------------------------------------------------
def to_coco_results(outputs: list[dict], image_ids: list[int], label_to_cat_id: dict[int, int],
                    mask_threshold: float = 0.5) -> list[dict]:
    """torchvision detections (boxes xyxy in original image pixels, contiguous labels, scores,
    mask probabilities [N, 1, H, W]) -> COCO results: xywh boxes, dataset category ids, RLE masks."""
    import numpy as np
    from pycocotools import mask as mask_utils

    out = []
    for det, iid in zip(outputs, image_ids):
        boxes = det["boxes"].float().cpu().numpy()
        if not len(boxes):
            continue
        boxes[:, 2:] -= boxes[:, :2]                                   # xyxy -> xywh
        labels, scores = det["labels"].cpu().tolist(), det["scores"].float().cpu().tolist()
        rles = None
        if "masks" in det:
            binary = (det["masks"][:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)   # [N, H, W]
            rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))          # H, W, N
        for k, (label, s) in enumerate(zip(labels, scores)):
            r = {"image_id": int(iid), "category_id": int(label_to_cat_id[int(label)]),
                 "bbox": [round(float(v), 3) for v in boxes[k]], "score": round(float(s), 5)}
            if rles is not None:
                r["segmentation"] = {"size": [int(v) for v in rles[k]["size"]],
                                     "counts": rles[k]["counts"].decode("ascii")}
            out.append(r)
    return out


def predict(model, dataset, device, *, batch_size: int = 1, num_workers: int = 0,
            indices: list[int] | None = None) -> tuple[list[dict], list[int]]:
    """COCO results and the image ids seen, for dataset[i], i in `indices` (default: all).
    `dataset` yields (float image [3, H, W] at original size, target with 'image_id')."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from maebench.tasks.coco.data import collate, raise_load_failure

    subset = Subset(dataset, list(range(len(dataset))) if indices is None else list(indices))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    label_to_cat_id = dataset.label_to_cat_id
    was_training = model.training
    model.eval()
    results, seen = [], []
    try:
        with torch.no_grad():
            for batch in loader:
                raise_load_failure(batch)
                images, targets = batch
                outputs = model([im.to(device, non_blocking=True) for im in images])
                ids = [int(t["image_id"]) for t in targets]
                results += to_coco_results(outputs, ids, label_to_cat_id)
                seen += ids
    finally:
        model.train(was_training)
    return results, seen


def make_evaluator(dataset, *, out_dir: str | os.PathLike | None, device, batch_size: int = 1,
                   num_workers: int = 0, log: Callable[[str], None] = print) -> Callable[[Any], dict]:
    """`evaluate(model) -> metrics` for engine.fit, run on every rank: each rank predicts its
    ShardSampler share (every image exactly once), rank 0 gathers, checks that the shares add
    up to the whole split, writes out_dir/coco_results.json and scores it; the metrics are
    broadcast so every rank returns the same dict."""
    from maebench import distributed as dist

    drop_degenerate_polygons(dataset.coco, dataset.ann_file)

    def evaluate(model) -> dict:
        shard = dist.ShardSampler(len(dataset)).indices
        results, seen = predict(model, dataset, device, batch_size=batch_size, num_workers=num_workers, indices=shard)
        gathered = dist.all_gather_objects((results, seen))
        metrics = None
        if dist.is_main():
            all_results = [r for part, _ in gathered for r in part]
            all_seen = sorted(i for _, ids in gathered for i in ids)
            if all_seen != sorted(dataset.ids):
                raise MaebenchError(f"distributed evaluation saw {len(all_seen)} images ({len(set(all_seen))} distinct) "
                                    f"of the {len(dataset.ids)} in {dataset.ann_file}")
            if out_dir is not None:
                write_results(all_results, Path(out_dir) / RESULTS_FILE)
            metrics = score(dataset.coco, all_results, source=f"predictions on {dataset.ann_file}", trusted=True)
            log(f"coco eval ({len(all_seen)} images, {len(all_results)} detections): {summary(metrics)}")
        return dist.broadcast_object(metrics)

    return evaluate
