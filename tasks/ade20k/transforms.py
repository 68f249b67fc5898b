"""Joint image / label transforms of the ADE20K protocol (mmseg's ADE20K pipeline).

Training: random resize (scale ratio 0.5-2.0 of the base scale), random crop that avoids crops
dominated by one class (cat_max_ratio), horizontal flip, photometric distortion, normalise, pad
to the crop size (image with 0 = the mean colour after normalising, label with ignore_index).
Evaluation: resize to the base scale keeping the aspect ratio and normalise; the label is left
at its ORIGINAL size, because metrics are computed there (predictions are resized back).

The base scale is mmseg's (2048, 512) for img_size 512: the short side goes to img_size unless
the long side would exceed 4 x img_size. All randomness comes from torch's RNG, which the
engine seeds per (seed, epoch) and the DataLoader seeds per worker, so runs replay exactly.

Image arrays are uint8 [H, W, 3] between steps (the photometric steps clip and round like
mmcv's); labels are int64 [H, W].
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _coin(p: float) -> bool:
    return float(torch.rand(())) < p


def rescale_size(width: int, height: int, img_size: int, ratio: float = 1.0) -> tuple[int, int]:
    """(new_w, new_h) keeping the aspect ratio: short side <= img_size*ratio, long side <= 4*img_size*ratio
    (mmseg Resize(img_scale=(4*img_size, img_size), keep_ratio=True))."""
    long_target, short_target = 4 * img_size * ratio, img_size * ratio
    scale = min(long_target / max(width, height), short_target / min(width, height))
    return max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5))


def resize_pair(image: Image.Image, label: np.ndarray, size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """Bilinear for the image, nearest for the label (class ids must never be blended)."""
    if size == image.size:
        return image, label
    image = image.resize(size, Image.BILINEAR)
    lab = Image.fromarray(label.astype(np.int32)).resize(size, Image.NEAREST)   # 32-bit mode "I"
    return image, np.asarray(lab, dtype=np.int64)


def random_crop_box(label: np.ndarray, crop: int, ignore_index: int, cat_max_ratio: float = 0.75,
                    tries: int = 10) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a crop of at most crop x crop. Up to `tries` draws are rejected while
    one class covers more than cat_max_ratio of the labelled pixels (mmseg RandomCrop), so that
    training crops are not all sky or wall; the last draw is kept if none qualifies."""
    h, w = label.shape

    def draw():
        y0 = int(torch.randint(0, max(h - crop, 0) + 1, ()))
        x0 = int(torch.randint(0, max(w - crop, 0) + 1, ()))
        return y0, min(y0 + crop, h), x0, min(x0 + crop, w)

    box = draw()
    if cat_max_ratio >= 1.0:
        return box
    for _ in range(tries):
        y0, y1, x0, x1 = box
        values, counts = np.unique(label[y0:y1, x0:x1], return_counts=True)
        counts = counts[values != ignore_index]
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            return box
        box = draw()
    return box


def photometric_distortion(img: np.ndarray, brightness: float = 32, contrast=(0.5, 1.5),
                           saturation=(0.5, 1.5), hue: float = 18) -> np.ndarray:
    """mmseg PhotoMetricDistortion on uint8 RGB [H, W, 3]: each step with probability 1/2,
    contrast either before or after the colour steps; hue in OpenCV units (0-180 per turn)."""

    def convert(x, alpha=1.0, beta=0.0):
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    img = np.asarray(img)
    if _coin(0.5):
        img = convert(img, beta=_uniform(-brightness, brightness))
    contrast_first = _coin(0.5)
    if contrast_first and _coin(0.5):
        img = convert(img, alpha=_uniform(*contrast))
    do_sat, do_hue = _coin(0.5), _coin(0.5)
    if do_sat or do_hue:
        hsv = np.array(Image.fromarray(img).convert("HSV"), dtype=np.int32)  # H, S, V in 0..255
        if do_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * _uniform(*saturation), 0, 255)
        if do_hue:   # PIL hue spans 0..255 for a full turn, OpenCV's 0..180
            shift = int(round(_uniform(-hue, hue) * 256 / 180))
            hsv[..., 0] = (hsv[..., 0] + shift) % 256
        img = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))
    if not contrast_first and _coin(0.5):
        img = convert(img, alpha=_uniform(*contrast))
    return img


def to_tensor(img: np.ndarray | Image.Image, mean, std) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W], normalised with mean/std given on the 0-1 scale."""
    x = torch.from_numpy(np.array(img, dtype=np.float32, copy=True)).permute(2, 0, 1) / 255.0
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


class SegTrainTransform:
    """(PIL image, int64 label [H, W]) -> (float [3, crop, crop], int64 [crop, crop])."""

    def __init__(self, *, img_size: int, crop_size: int, mean, std, ignore_index: int = 255,
                 ratio_range=(0.5, 2.0), cat_max_ratio: float = 0.75, flip: float = 0.5,
                 photometric: bool = True):
        self.img_size, self.crop_size = int(img_size), int(crop_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.ignore_index = int(ignore_index)
        self.ratio_range = tuple(ratio_range)
        self.cat_max_ratio, self.flip, self.photometric = float(cat_max_ratio), float(flip), bool(photometric)

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        size = rescale_size(*image.size, self.img_size, _uniform(*self.ratio_range))
        image, label = resize_pair(image, label, size)
        y0, y1, x0, x1 = random_crop_box(label, self.crop_size, self.ignore_index, self.cat_max_ratio)
        img = np.asarray(image)[y0:y1, x0:x1]
        label = label[y0:y1, x0:x1]
        if _coin(self.flip):
            img, label = img[:, ::-1], label[:, ::-1]
        if self.photometric:
            img = photometric_distortion(np.ascontiguousarray(img))
        x = to_tensor(img, self.mean, self.std)
        y = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
        # pad bottom / right up to the crop size: crops of small images stay batchable
        ph, pw = self.crop_size - x.shape[1], self.crop_size - x.shape[2]
        if ph > 0 or pw > 0:
            x = torch.nn.functional.pad(x, (0, max(pw, 0), 0, max(ph, 0)), value=0.0)
            y = torch.nn.functional.pad(y, (0, max(pw, 0), 0, max(ph, 0)), value=self.ignore_index)
        return x, y


class SegEvalTransform:
    """(PIL image, int64 label [H, W]) -> (float [3, h, w] at the base scale, int64 label [H, W] unchanged)."""

    def __init__(self, *, img_size: int, mean, std):
        self.img_size = int(img_size)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        size = rescale_size(*image.size, self.img_size)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
        return to_tensor(image, self.mean, self.std), torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
