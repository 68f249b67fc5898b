"""Detection transforms on (PIL image, target) pairs from `maebench.data.coco.CocoInstances`,
applied to the image, its boxes and its masks together.

  lsj      large-scale jitter (ViTDet / Ghiasi et al. 2021; the paper's A.3 recipe): resize so
           the image fits a square of side img_size * s, s ~ U(scale_range), random-crop or pad
           to img_size x img_size, flip. Boxes are recomputed from the cropped masks (as in
           ViTDet's loader) and instances cut away entirely are dropped.
  resize   flip only; GeneralizedRCNNTransform then does the classic multi-scale resize.
  eval     the image as a tensor; the model resizes it and maps its detections back.

Images come out as float [3, H, W] in [0, 1]: normalisation with the backbone's mean/std is
the model's job (GeneralizedRCNNTransform), so padding is filled with the mean colour, which
normalises to zero like ViTDet's padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from maebench.errors import MaebenchError


def to_float(image) -> torch.Tensor:
    """PIL RGB -> float [3, H, W] in [0, 1]."""
    return pil_to_tensor(image).float().div_(255)


def hflip(img: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    w = img.shape[-1]
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    target["masks"] = target["masks"].flip(-1)
    return img.flip(-1), target


def boxes_from_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """masks [N, H, W] -> (boxes [N, 4] xyxy with exclusive right/bottom edges, as COCO's
    toBbox gives, and nonempty [N] bool)."""
    n, h, w = masks.shape
    masks = masks.bool()
    rows, cols = masks.any(2), masks.any(1)                      # [N, H], [N, W]
    nonempty = rows.any(1)
    y1 = rows.float().argmax(1)
    y2 = h - rows.flip(1).float().argmax(1)
    x1 = cols.float().argmax(1)
    x2 = w - cols.flip(1).float().argmax(1)
    return torch.stack([x1, y1, x2, y2], dim=1).float(), nonempty


class LargeScaleJitter:
    """Resize by a random scale, crop / pad to a fixed square, flip."""

    def __init__(self, size: int, scale_range=(0.1, 2.0), flip_prob: float = 0.5, fill=(0.5, 0.5, 0.5)):
        self.size, self.flip_prob = int(size), float(flip_prob)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.fill = torch.tensor(fill, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image, target: dict) -> tuple[torch.Tensor, dict]:
        img, size = to_float(image), self.size
        h, w = img.shape[-2:]
        lo, hi = self.scale_range
        s = lo + (hi - lo) * float(torch.rand(()))
        r = min(size * s / h, size * s / w)
        nh, nw = max(1, round(h * r)), max(1, round(w * r))
        img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
        masks = target["masks"]
        masks = F.interpolate(masks[None].float(), size=(nh, nw), mode="nearest")[0].to(torch.uint8) \
            if len(masks) else masks.new_zeros((0, nh, nw))
        # random crop when larger than the square: [nh, nw] -> [ch, cw] <= [size, size]
        y0 = int(torch.randint(0, nh - size + 1, ())) if nh > size else 0
        x0 = int(torch.randint(0, nw - size + 1, ())) if nw > size else 0
        ch, cw = min(nh, size), min(nw, size)
        img, masks = img[:, y0:y0 + ch, x0:x0 + cw], masks[:, y0:y0 + ch, x0:x0 + cw]
        # pad bottom / right to the square: image with the mean colour, masks with 0
        canvas = self.fill.expand(3, size, size).clone()
        canvas[:, :ch, :cw] = img
        padded = masks.new_zeros((len(masks), size, size))
        padded[:, :ch, :cw] = masks
        boxes, keep = boxes_from_masks(padded)
        target = dict(target)
        target.update(boxes=boxes[keep], masks=padded[keep], labels=target["labels"][keep],
                      area=padded[keep].flatten(1).sum(1).float(), iscrowd=target["iscrowd"][keep])
        if float(torch.rand(())) < self.flip_prob:
            canvas, target = hflip(canvas, target)
        return canvas, target


class FlipOnly:
    """The 'resize' mode's data-side part: the model's transform does the resizing."""

    def __init__(self, flip_prob: float = 0.5):
        self.flip_prob = float(flip_prob)

    def __call__(self, image, target: dict) -> tuple[torch.Tensor, dict]:
        img = to_float(image)
        if float(torch.rand(())) < self.flip_prob:
            return hflip(img, target)
        return img, target


def eval_transform(image, target: dict) -> tuple[torch.Tensor, dict]:
    return to_float(image), target


def train_transform(cfg: dict, mean) -> LargeScaleJitter | FlipOnly:
    aug = cfg["aug"]
    if aug["mode"] == "lsj":
        return LargeScaleJitter(cfg["img_size"], aug["scale_range"], aug["flip"], fill=mean)
    return FlipOnly(aug["flip"])


class LoadFailure:
    """A sample that could not be loaded, carried to the main process as data. torch re-raises
    an exception from a DataLoader worker with the worker's traceback folded into its message,
    which would turn a one-line 'cannot read image X' into a screenful."""

    def __init__(self, message: str):
        self.message = message


class ReportLoadErrors(Dataset):
    """Wraps a CocoInstances: a MaebenchError while loading sample i becomes a LoadFailure naming
    the image id and annotation file; `collate` passes it on and `raise_load_failure` raises it,
    in the main process, as the original one-line error."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset[i]
        except MaebenchError as e:
            ids, ann = getattr(self.dataset, "ids", None), getattr(self.dataset, "ann_file", "?")
            return LoadFailure(f"{e} (image id {ids[i] if ids is not None else i} in {ann})")

    def __getattr__(self, name: str):
        if name == "dataset":            # not yet set while unpickling in a spawned worker
            raise AttributeError(name)
        return getattr(self.dataset, name)   # ids, coco, label_to_cat_id, ann_file, ...


def raise_load_failure(batch) -> None:
    if isinstance(batch, LoadFailure):
        raise MaebenchError(batch.message)


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict]] | LoadFailure:
    """Detection batches are lists: images differ in size and targets in instance count."""
    failed = [b for b in batch if isinstance(b, LoadFailure)]
    if failed:
        return failed[0]
    images, targets = zip(*batch)
    return list(images), list(targets)
