"""Loading and validating a COCO instances JSON file, without torch.

pycocotools trusts its input: an annotation pointing at an unlisted image or an undeclared
category, or an image listed twice, surfaces much later as a KeyError deep inside training or
evaluation, or silently overwrites an entry. Here every such fault is named up front, with the
file and the annotation id. `problems()` lists them all (for `maebench data check`); `load()`
raises on the first.

Files written by annotation tools (labelme's converter, CVAT, ...) differ from COCO's own in ways
that are not faults but that pycocotools mis-scores or trips on; `normalise()` fixes those before
training and before COCOeval, and says what it did in one counted line each (see NORMALISATIONS).
Image and category ids are never changed, so predictions carry the dataset's own ids.
"""
from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

from maebench.data.files import require_file
from maebench.errors import MaebenchError


def read_json(path: str | os.PathLike, what: str):
    """A parsed JSON file, or a one-line error naming it and where the JSON breaks."""
    path = require_file(path, what)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise MaebenchError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MaebenchError(f"cannot read {path}: {e}") from None


def make_coco(data: dict):
    """A pycocotools COCO object over an already-validated dict (no second parse, no prints)."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def read(ann_file: str | os.PathLike) -> dict:
    """The parsed annotation JSON, or a one-line error naming the file."""
    path = Path(ann_file)
    data = read_json(path, "COCO annotation file")
    if not isinstance(data, dict):
        raise MaebenchError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    return data


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def segmentation_problem(seg, height: int, width: int) -> str | None:
    """Why a segmentation is malformed, or None. Polygons with < 3 points are not malformed
    (they are degenerate and dropped for training); odd coordinate counts are."""
    if isinstance(seg, list):
        for part in seg:
            if not isinstance(part, list) or not all(_is_num(v) for v in part):
                return "polygon is not a list of numbers"
            if len(part) % 2:
                return f"polygon has an odd number of coordinates ({len(part)})"
        return None
    if isinstance(seg, dict):
        counts, size = seg.get("counts"), seg.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            return "RLE has no [height, width] 'size'"
        if list(size) != [height, width]:
            return f"RLE size {size} differs from the image's [{height}, {width}]"
        if isinstance(counts, list):
            if not all(_is_int(v) and v >= 0 for v in counts):
                return "uncompressed RLE counts must be non-negative integers"
            if sum(counts) != height * width:
                return f"uncompressed RLE counts sum to {sum(counts)}, not height*width={height * width}"
            return None
        if isinstance(counts, str):
            return None if counts else "compressed RLE counts are empty"
        return "RLE 'counts' must be a string or a list of integers"
    return "segmentation must be a list of polygons or an RLE object"


def is_degenerate(ann: dict, height: int, width: int) -> str | None:
    """Why an annotation cannot train a Mask R-CNN target ('degenerate_box': zero width or
    height inside the image; 'degenerate_polygon': no polygon with >= 3 points), or None."""
    x, y, w, h = ann["bbox"]
    x1, y1 = max(0.0, min(x, width)), max(0.0, min(y, height))
    x2, y2 = max(0.0, min(x + w, width)), max(0.0, min(y + h, height))
    if x2 <= x1 or y2 <= y1:
        return "degenerate_box"
    seg = ann["segmentation"]
    if isinstance(seg, list) and not any(len(part) >= 6 for part in seg):
        return "degenerate_polygon"
    return None


def problems(data: dict, ann_file: str | os.PathLike) -> list[str]:
    """Every structural fault of a COCO instances dict, each message naming the file and id."""
    f = str(ann_file)
    out = []
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            out.append(f"{f}: missing '{key}' list")
    if "annotations" in data and not isinstance(data["annotations"], list):
        out.append(f"{f}: 'annotations' is not a list")
    if out:
        return out

    images = {}
    for img in data["images"]:
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            out.append(f"{f}: image entry without an integer 'id': {str(img)[:80]}")
            continue
        iid = img["id"]
        if iid in images:
            out.append(f"{f}: image id {iid} is listed twice")
            continue
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            out.append(f"{f}: image id {iid} has no 'file_name'")
        if not (_is_int(img.get("height")) and _is_int(img.get("width")) and img["height"] > 0 and img["width"] > 0):
            out.append(f"{f}: image id {iid} needs positive integer 'height' and 'width'")
            continue
        images[iid] = img

    categories = set()
    for cat in data["categories"]:
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            out.append(f"{f}: category entry without an integer 'id': {str(cat)[:80]}")
        elif cat["id"] in categories:
            out.append(f"{f}: category id {cat['id']} is declared twice")
        else:
            categories.add(cat["id"])

    for ann in data.get("annotations", []):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            out.append(f"{f}: annotation without an integer 'id': {str(ann)[:80]}")
            continue
        aid = ann["id"]
        where = f"{f}: annotation id {aid}"
        if ann.get("image_id") not in images:
            out.append(f"{where} refers to image id {ann.get('image_id')}, which is not listed in 'images'")
            continue
        if ann.get("category_id") not in categories:
            out.append(f"{where} has category id {ann.get('category_id')}, which is not declared in 'categories'")
        bbox = ann.get("bbox")       # a missing 'bbox' or 'area' is derived from the mask (normalise)
        if "bbox" in ann and not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
            out.append(f"{where} needs 'bbox' [x, y, width, height]")
        if "area" in ann and not _is_num(ann.get("area")):
            out.append(f"{where} needs a numeric 'area'")
        if ann.get("iscrowd", 0) not in (0, 1):
            out.append(f"{where} has iscrowd {ann.get('iscrowd')!r}; expected 0 or 1")
        if "segmentation" not in ann:
            out.append(f"{where} has no 'segmentation'")
        else:
            img = images[ann["image_id"]]
            why = segmentation_problem(ann["segmentation"], img["height"], img["width"])
            if why:
                out.append(f"{where}: {why}")
    return out


def _mask_rle(seg, height: int, width: int):
    from maebench.data.masks import rle_from_segmentation
    return rle_from_segmentation(seg, height, width)


def normalise(data: dict) -> list[str]:
    """Make a validated dict safe for pycocotools, in place; one counted line per change made.

    - annotation ids from 0 or repeated: COCOeval records a match by the ground truth's id and
      reads 0 as "unmatched" (and a repeated id indexes one object twice), so all annotations
      are renumbered 1..N in file order (annotation ids appear in no prediction);
    - no 'iscrowd': 0; no 'bbox' or 'area': the box and the pixel area of the mask;
    - no 'annotations' list: [] (images without annotations are kept as they are, silently).
    Category id 0 and RLE counts as a list or a string need no change (both are scored as
    written) and are counted so that `maebench data check` shows what the file holds."""
    notes = []
    anns = data.setdefault("annotations", [])      # a test-set file (image_info) has none
    ids = [a["id"] for a in anns]
    if any(i < 1 for i in ids) or len(set(ids)) != len(ids):
        zero, repeated = sum(1 for i in ids if i < 1), len(ids) - len(set(ids))
        changed = sum(1 for n, a in enumerate(anns, 1) if a["id"] != n)
        for n, a in enumerate(anns, 1):
            a["id"] = n
        notes.append(f"{changed} annotation ids renumbered ({zero} below 1, {repeated} repeated; now 1..{len(anns)} "
                     "in file order): COCOeval matches objects by id and reads 0 as unmatched")
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    counts = dict.fromkeys(("iscrowd", "bbox", "area", "rle_list", "rle_string"), 0)
    for a in anns:
        if "iscrowd" not in a:
            a["iscrowd"] = 0
            counts["iscrowd"] += 1
        seg = a.get("segmentation")
        if isinstance(seg, dict) and not a["iscrowd"]:
            counts["rle_list" if isinstance(seg.get("counts"), list) else "rle_string"] += 1
        if "bbox" in a and "area" in a:
            continue
        from pycocotools import mask as mask_utils
        rle = _mask_rle(seg, *sizes[a["image_id"]])
        if "bbox" not in a:
            a["bbox"] = [float(v) for v in mask_utils.toBbox(rle)] if rle is not None else [0.0, 0.0, 0.0, 0.0]
            counts["bbox"] += 1
        if "area" not in a:
            a["area"] = float(mask_utils.area(rle)) if rle is not None else 0.0
            counts["area"] += 1
    zero_cats = [c for c in data["categories"] if c["id"] == 0]
    said = {"iscrowd": "annotations without 'iscrowd': read as 0 (not crowd)",
            "bbox": "annotations without 'bbox': the box of the mask",
            "area": "annotations without 'area': the pixel area of the mask",
            "rle_list": "objects with uncompressed RLE masks (counts a list): read as written",
            "rle_string": "objects with compressed RLE masks (counts a string): read as written"}
    notes += [f"{n} {said[k]}" for k, n in counts.items() if n]
    if zero_cats:
        notes.append(f"{len(zero_cats)} category with id 0 ({zero_cats[0].get('name')!r}): kept; training labels are "
                     "1..K, predictions carry the dataset's category ids")
    return notes


def load(ann_file: str | os.PathLike, notes: list[str] | None = None) -> dict:
    """The validated, normalised dict, or a MaebenchError on the first fault. The lines of
    normalise() go to `notes` when given, else to stderr as one note line naming the file."""
    data = read(ann_file)
    found = problems(data, ann_file)
    if found:
        more = f" (and {len(found) - 1} more problems; run `maebench data check`)" if len(found) > 1 else ""
        raise MaebenchError(found[0] + more)
    said = [s for s in normalise(data) if "read as written" not in s and "kept;" not in s]
    if notes is not None:
        notes += said
    elif said:
        import sys
        print(f"maebench: note: {ann_file}: normalised: {'; '.join(said)}", file=sys.stderr)
    return data


def image_path(images_dir: str | os.PathLike, img: dict) -> Path:
    return Path(images_dir) / img["file_name"]
