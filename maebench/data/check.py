"""`maebench data check`: validate a dataset directory without training.

Every problem is collected (not just the first), so one run lists all the files to fix. No
torch import: checking answers in the time it takes to open the files.
"""
from __future__ import annotations

import copy
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from maebench.data import coco_json, layout
from maebench.data.files import image_size, is_image_file, load_label, verify_image
from maebench.errors import MaebenchError

TASKS = ("classification", "coco", "ade20k")


@dataclass
class Report:
    task: str
    path: str
    summary: list[str] = field(default_factory=list)   # counts and classes
    notes: list[str] = field(default_factory=list)     # worth knowing, not wrong
    problems: list[str] = field(default_factory=list)  # wrong: exit 1

    def render(self) -> str:
        lines = [f"{self.task} dataset {self.path}"]
        lines += [f"  {s}" for s in self.summary]
        lines += [f"  note: {n}" for n in self.notes]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def check(task: str, path: str | os.PathLike, num_classes: int | None = None, decode: bool = True) -> Report:
    """Check `path` as a `task` dataset; decode=False only verifies file structure (faster)."""
    if task not in TASKS:
        from maebench.errors import unknown
        raise unknown("task", task, TASKS)
    root = Path(path).expanduser()
    layout.require_dir(root, "dataset directory")
    report = Report(task, str(root))
    if task == "classification":
        _classification(root, report, decode)
    elif task == "coco":
        _coco(root, report, decode)
    else:
        _ade20k(root, report, num_classes, decode)
    return report


def _verify_all(paths, report: Report, decode: bool) -> None:
    for p in paths:
        why = verify_image(p, decode=decode)
        if why:
            report.problems.append(f"broken image {p}: {why}")


def _classification(root: Path, report: Report, decode: bool) -> None:
    splits = [s for s in ("train", "val") if (root / s).is_dir()]
    if not splits:
        report.problems.append(f"no train/ or val/ split directory in {root}")
        return
    for split in splits:
        try:
            classes, samples = layout.scan_imagefolder(root, split)
        except MaebenchError as e:
            report.problems.append(str(e))
            continue
        per_class = Counter(label for _, label in samples)
        sizes = [per_class.get(i, 0) for i in range(len(classes))]
        report.summary.append(f"{split}: {len(samples)} images in {len(classes)} classes "
                              f"({min(sizes)}..{max(sizes)} per class)")
        for i, name in enumerate(classes):
            folder = root / split / name
            if not folder.is_dir():
                report.notes.append(f"{split} has no folder for class {name}")
            elif per_class.get(i, 0) == 0:
                report.problems.append(f"class folder {folder} has no images")
        split_dir = root / split
        stray = [e for e in os.listdir(split_dir) if (split_dir / e).is_file() and is_image_file(e)]
        if stray:
            report.problems.append(f"{len(stray)} image(s) directly in {split_dir} outside any class folder, "
                                   f"e.g. {split_dir / sorted(stray)[0]}")
        if split == splits[0]:
            report.summary.append(f"classes: {', '.join(classes)}")
        _verify_all([p for p, _ in samples], report, decode)


def _coco(root: Path, report: Report, decode: bool) -> None:
    try:
        paths = layout.resolve_coco(root)
    except MaebenchError as e:
        report.problems.append(str(e))
        return
    for split in ("train", "val"):
        ann_file, images_dir = Path(paths[f"{split}_json"]), Path(paths[f"{split}_images"])
        try:
            data = coco_json.read(ann_file)
        except MaebenchError as e:
            report.problems.append(str(e))
            continue
        found = coco_json.problems(data, ann_file)
        report.problems += found
        if not found:           # what the reader will change, one counted line each
            data = copy.deepcopy(data)
            report.notes += [f"{ann_file.name}: {n}" for n in coco_json.normalise(data)]
        images = _dicts(data.get("images"))
        anns = _dicts(data.get("annotations"))
        cats = _dicts(data.get("categories"))
        image_ids = {im.get("id") for im in images}
        empty = len(image_ids - {a.get("image_id") for a in anns})
        crowd = sum(1 for a in anns if a.get("iscrowd", 0) == 1)
        report.summary.append(f"{split}: {len(images)} images ({empty} without annotations), "
                              f"{len(anns)} annotations ({crowd} crowd) in {ann_file.name}")
        names = ", ".join(f"{c.get('id')}:{c.get('name')}" for c in sorted(cats, key=_id_key))
        report.summary.append(f"{split} categories ({len(cats)}): {names}")
        _coco_degenerate(images, anns, ann_file, report)
        _coco_files(images, images_dir, ann_file, report, decode)


def _id_key(entry: dict):
    """Numeric ids in numeric order; anything else after them."""
    v = entry.get("id")
    return (0, v, "") if isinstance(v, int) else (1, 0, str(v))


def _dicts(value) -> list[dict]:
    """The dict entries of a JSON list (malformed entries are reported by coco_json.problems)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _coco_degenerate(images: list[dict], anns: list[dict], ann_file: Path, report: Report) -> None:
    sizes = {im.get("id"): (im.get("height"), im.get("width")) for im in images}
    found = Counter()
    for a in anns:
        h, w = sizes.get(a.get("image_id"), (None, None))
        if not (isinstance(h, int) and isinstance(w, int)) or a.get("iscrowd", 0):
            continue
        try:
            why = coco_json.is_degenerate(a, h, w)
        except (KeyError, TypeError, ValueError):
            continue  # malformed, already reported by coco_json.problems
        if why:
            found[why] += 1
    if found:
        report.notes.append(f"{ann_file.name}: {sum(found.values())} degenerate annotation(s) will be skipped in "
                            f"training ({', '.join(f'{k}: {v}' for k, v in sorted(found.items()))})")


def _coco_files(images: list[dict], images_dir: Path, ann_file: Path, report: Report, decode: bool) -> None:
    from PIL import Image

    for im in images:
        p = images_dir / im["file_name"]
        if not p.is_file():
            report.problems.append(f"missing image file {p} (image id {im.get('id')} in {ann_file.name})")
            continue
        why = verify_image(p, decode=decode)
        if why:
            report.problems.append(f"broken image {p}: {why}")
            continue
        with Image.open(p) as img:
            if (im.get("width"), im.get("height")) != img.size:
                report.problems.append(f"image {p} is {img.size[0]}x{img.size[1]} but {ann_file.name} says "
                                       f"{im.get('width')}x{im.get('height')}")


def _ade_class_names(root: Path) -> list[str] | None:
    """Class names from the generated set's meta.json or ADE20K's objectInfo150.txt."""
    for base in (root, root / "ADEChallengeData2016"):
        meta = base / "meta.json"
        if meta.is_file():
            try:
                names = json.loads(meta.read_text()).get("classes")
                if isinstance(names, list):
                    return [str(n) for n in names]
            except (OSError, ValueError):
                pass
        info = base / "objectInfo150.txt"
        if info.is_file():
            rows = [line.split("\t") for line in info.read_text().splitlines()[1:] if line.strip()]
            return [r[-1].split(";")[0].strip() for r in rows]
    return None


def _ade20k(root: Path, report: Report, num_classes: int | None, decode: bool) -> None:
    from maebench.data.seg_labels import map_label, size_problem

    names = _ade_class_names(root)
    if num_classes is None and names:
        num_classes = len(names)
    if num_classes is None:
        report.notes.append("number of classes unknown (no meta.json or objectInfo150.txt): label values not range-checked; "
                            "pass --num-classes K")
    elif names:
        report.summary.append(f"classes ({num_classes}, label 0 = other/ignored): {', '.join(names)}")
    for split in ("training", "validation"):
        try:
            images_dir, labels_dir = layout.resolve_ade20k(root, split)
            pairs, unmatched = layout.segmentation_pairs(images_dir, labels_dir)
        except MaebenchError as e:
            report.problems.append(str(e))
            continue
        report.problems += unmatched
        values = Counter()
        for image_path, label_path in pairs:
            why = verify_image(image_path, decode=decode)
            if why:
                report.problems.append(f"broken image {image_path}: {why}")
                continue
            try:
                raw = load_label(label_path)
            except MaebenchError as e:
                report.problems.append(str(e))
                continue
            problem = size_problem(image_size(image_path), image_path, label_path, raw)
            if problem:
                report.problems.append(problem)
            if num_classes is not None:
                try:
                    map_label(raw, num_classes, name=label_path)
                except MaebenchError as e:
                    report.problems.append(str(e))
            values.update(int(v) for v in set(raw.ravel().tolist()))
        seen = sorted(values)
        report.summary.append(f"{split}: {len(pairs)} image/label pairs; label values present: "
                              f"{_ranges(seen) if seen else 'none'}")


def _ranges(values: list[int]) -> str:
    """Sorted ints as runs: [0, 1, 2, 5] -> '0-2, 5'."""
    runs = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
