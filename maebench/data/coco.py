"""COCO instance segmentation reader (Mask R-CNN targets) for COCO 2017 and the embedded set.

Category ids (COCO's 1..90 with gaps, or the generated set's 3, 7, 12, 40) are mapped to
contiguous labels 1..K, with 0 left for background as torchvision's Mask R-CNN expects;
`label_to_cat_id` maps predictions back for COCO evaluation.
"""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from maebench.data import coco_json
from maebench.data.files import load_rgb, require_dir
from maebench.data.layout import resolve_coco
from maebench.data.masks import decode_mask
from maebench.errors import MaebenchError

__all__ = ["CocoInstances", "resolve_coco", "decode_mask"]

SKIP_REASONS = ("crowd", "degenerate_box", "degenerate_polygon")


class CocoInstances(Dataset):
    """(PIL RGB image, target) per image id, ids sorted, images without annotations included.

    target: boxes Float[N, 4] xyxy px (clipped to the image), labels Int64[N] in 1..K,
    masks UInt8[N, H, W], image_id int, area Float[N], iscrowd Int64[N].
    train=True drops crowd regions and degenerate annotations, counted in `skipped`.

    image_ids keeps only those images (a search trial's fit or held-out part): `coco`, the
    ground truth an evaluator scores against, then holds only them and their annotations
    (categories unchanged). data is ann_file already read by coco_json.load, so that two
    readers of one file parse it once."""

    def __init__(self, images_dir: str | os.PathLike, ann_file: str | os.PathLike, train: bool, transforms=None,
                 *, image_ids: Sequence[int] | None = None, data: dict | None = None):
        self.images_dir = str(require_dir(images_dir, "COCO images directory"))
        self.ann_file = str(ann_file)
        self.train = bool(train)
        self.transforms = transforms
        data = coco_json.load(ann_file) if data is None else data
        if image_ids is not None:
            keep = set(image_ids)
            data = {**data, "images": [im for im in data["images"] if im["id"] in keep],
                    "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
        self.coco = coco_json.make_coco(data)
        self.ids = sorted(self.coco.imgs)
        self.cat_ids = sorted(self.coco.cats)
        self.cat_id_to_label = {cat: i + 1 for i, cat in enumerate(self.cat_ids)}
        self.label_to_cat_id = {label: cat for cat, label in self.cat_id_to_label.items()}
        self.num_classes = len(self.cat_ids)
        self._check_files()
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)
        self._anns = {iid: self._keep(self.coco.imgToAnns.get(iid, []), self.coco.imgs[iid]) for iid in self.ids}
        bad = self.skipped["degenerate_box"] + self.skipped["degenerate_polygon"]
        if bad:
            warnings.warn(f"{self.ann_file}: skipped {bad} degenerate annotations for training "
                          f"({self.skipped['degenerate_box']} zero-size boxes, {self.skipped['degenerate_polygon']} "
                          f"polygons with < 3 points) and {self.skipped['crowd']} crowd regions", stacklevel=2)

    def _check_files(self) -> None:
        missing = [self._path(iid) for iid in self.ids if not os.path.exists(self._path(iid))]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise MaebenchError(f"image file listed in {self.ann_file} not found: {missing[0]}{more}")

    def _keep(self, anns: list[dict], img: dict) -> list[dict]:
        if not self.train:
            return list(anns)
        kept = []
        for ann in anns:
            why = "crowd" if ann.get("iscrowd", 0) else coco_json.is_degenerate(ann, img["height"], img["width"])
            if why:
                self.skipped[why] += 1
            else:
                kept.append(ann)
        return kept

    def _path(self, image_id: int) -> str:
        return os.path.join(self.images_dir, self.coco.imgs[image_id]["file_name"])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        h, w = info["height"], info["width"]
        path = self._path(image_id)
        image = load_rgb(path)
        if image.size != (w, h):
            raise MaebenchError(f"image {path} is {image.size[0]}x{image.size[1]} but {self.ann_file} "
                                f"says {w}x{h} (image id {image_id})")
        anns = self._anns[image_id]
        boxes = torch.zeros((len(anns), 4), dtype=torch.float32)
        for i, ann in enumerate(anns):
            x, y, bw, bh = ann["bbox"]
            boxes[i] = torch.tensor([x, y, x + bw, y + bh], dtype=torch.float32)
        boxes[:, 0::2].clamp_(0, w)
        boxes[:, 1::2].clamp_(0, h)
        masks = (np.stack([decode_mask(a["segmentation"], h, w) for a in anns]) if anns
                 else np.zeros((0, h, w), dtype=np.uint8))
        target = {
            "boxes": boxes,                                             # [N, 4] xyxy
            "labels": torch.tensor([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),                           # [N, H, W] uint8
            "image_id": int(image_id),
            "area": torch.tensor([float(a["area"]) for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
        }
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target
