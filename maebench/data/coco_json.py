"""Loading and validating a COCO instances JSON file, without torch.

pycocotools trusts its input: an annotation pointing at an unlisted image or an undeclared
category, or an image listed twice, surfaces much later as a KeyError deep inside training or
evaluation, or silently overwrites an entry. Here every such fault is named up front, with the
file and the annotation id. `problems()` lists them all (for `maebench data check`); `load()`
raises on the first.
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

    ann_ids = set()
    for ann in data.get("annotations", []):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            out.append(f"{f}: annotation without an integer 'id': {str(ann)[:80]}")
            continue
        aid = ann["id"]
        where = f"{f}: annotation id {aid}"
        if aid in ann_ids:
            out.append(f"{where} is used twice")
        ann_ids.add(aid)
        if ann.get("image_id") not in images:
            out.append(f"{where} refers to image id {ann.get('image_id')}, which is not listed in 'images'")
            continue
        if ann.get("category_id") not in categories:
            out.append(f"{where} has category id {ann.get('category_id')}, which is not declared in 'categories'")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
            out.append(f"{where} needs 'bbox' [x, y, width, height]")
        if not _is_num(ann.get("area")):
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


def load(ann_file: str | os.PathLike) -> dict:
    """The validated dict ('annotations' defaulted to []), or a MaebenchError on the first fault."""
    data = read(ann_file)
    found = problems(data, ann_file)
    if found:
        more = f" (and {len(found) - 1} more problems; run `maebench data check`)" if len(found) > 1 else ""
        raise MaebenchError(found[0] + more)
    data.setdefault("annotations", [])
    return data


def image_path(images_dir: str | os.PathLike, img: dict) -> Path:
    return Path(images_dir) / img["file_name"]
