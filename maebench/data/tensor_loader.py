"""A loader that keeps up: an in-memory image set decoded once to a uint8 tensor, and the
training augmentation run on whole batches on the training device.

Where it applies (`supported`): an ImageFolder (or a label subset of one) whose images all have
one size, that fits the memory budget, with the MAE pretraining / linear-probe transform
`classification_train` (RandomResizedCrop -> RandomHorizontalFlip -> ToTensor -> Normalize,
maebench/data/transforms.py), or the classification recipe's timm transform when it reduces to
the same four steps (no RandAugment, colour jitter or random erasing: the fine-tuning entries
for vit-micro). Its parameters are read from the transform itself, so the
tensor path is the same augmentation: the same crop-box rule as torchvision's
RandomResizedCrop.get_params (10 tries of area x log-uniform aspect, then the centre-crop
fallback), the flip with its probability, bicubic resampling, the same normalisation. It is not
bit-identical to PIL's bicubic resize (PIL rounds to uint8 and antialiases when shrinking; a
crop here is only ever enlarged when the crop is at most the output size).

Decoding happens once per image set: the uint8 tensor is kept under
$MAEBENCH_HOME/cache/tensors/<key>.pt, keyed by the files' paths, sizes and modification times.

Randomness and exact resume: batch b of an epoch draws its crops and flips from its own
generator seeded with (the epoch's loader seed, the process's rank, b); the engine reseeds the loader generator
every epoch from (seed, epoch), and the order comes from the engine's DistributedSampler. A
batch's content therefore depends only on (seed, epoch, b), never on what ran before, so a
resumed run that skips the first batches of an epoch replays the rest bit for bit. The global
RNG (the model's: masking noise, dropout) is never touched.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

MEMORY_BUDGET = 2 * 2 ** 30          # bytes of uint8 images at most (and a quarter of free RAM)


# ---- which sets and transforms --------------------------------------------------------------
def augmentation_of(transform) -> dict | None:
    """The parameters of a crop + flip + normalise transform, or None for any other transform.

    Two spellings are the same augmentation: maebench's `classification_train` (torchvision's
    RandomResizedCrop) and timm's `create_transform` with RandAugment, colour jitter and random
    erasing off (timm's RandomResizedCropAndInterpolation, whose get_params is torchvision's
    rule, and MaybeToTensor): the fine-tuning recipe of a mild protocol entry."""
    from timm.data.transforms import MaybeToTensor, RandomResizedCropAndInterpolation
    from torchvision import transforms as T
    steps = getattr(transform, "transforms", None)
    if not isinstance(transform, T.Compose) or len(steps) != 4:
        return None
    rrc, flip, to_tensor, norm = steps
    if not (isinstance(rrc, (T.RandomResizedCrop, RandomResizedCropAndInterpolation))
            and type(flip) is T.RandomHorizontalFlip
            and isinstance(to_tensor, (T.ToTensor, MaybeToTensor)) and type(norm) is T.Normalize):
        return None
    if getattr(rrc.interpolation, "value", None) not in ("bicubic", "bilinear"):    # timm's "random": a tuple
        return None
    return {"size": tuple(rrc.size), "scale": tuple(rrc.scale), "ratio": tuple(rrc.ratio),
            "mode": rrc.interpolation.value, "flip": float(flip.p),
            "mean": tuple(float(x) for x in norm.mean), "std": tuple(float(x) for x in norm.std)}


def supported(dataset, collate_fn=None) -> str | None:
    """None when the tensor loader can serve `dataset`, else the reason it cannot."""
    from maebench.data.imagefolder import ImageFolder
    if collate_fn is not None:
        return "a custom collate function"
    if not isinstance(dataset, ImageFolder):
        return f"{type(dataset).__name__} is not an ImageFolder"
    if augmentation_of(dataset.transform) is None:
        return "the transform is not the pretraining crop + flip"
    return None


# ---- decode once ----------------------------------------------------------------------------
def _key(dataset) -> str:
    h = hashlib.sha1(f"{Path(dataset.root).resolve()}|{dataset.split}".encode())
    for path, label in dataset.samples:
        st = os.stat(path)
        h.update(f"{path}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def decode(dataset, log: Callable[[str], None] = print) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(uint8 N x 3 x H x W, int64 labels), from the cache or decoded now; None when the images
    differ in size or the set is over the memory budget."""
    import numpy as np

    from maebench.data.files import load_rgb
    from maebench.home import home_dir

    if not dataset.samples:
        return None
    path = home_dir() / "cache" / "tensors" / f"{_key(dataset)}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            return blob["images"], blob["labels"]
        except Exception:            # noqa: BLE001 -- a damaged cache file is decoded again
            pass
    w, h = load_rgb(dataset.samples[0][0]).size
    n = len(dataset.samples)
    if n * 3 * w * h > min(MEMORY_BUDGET, _free_bytes() // 4):
        return None
    images = torch.empty(n, h, w, 3, dtype=torch.uint8)

    def put(i: int) -> bool:
        img = load_rgb(dataset.samples[i][0])
        if img.size != (w, h):
            return False
        images[i] = torch.from_numpy(np.array(img))
        return True

    from concurrent.futures import ThreadPoolExecutor     # PIL decodes without the GIL
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        if not all(pool.map(put, range(n), chunksize=256)):
            return None
    images = images.permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in dataset.samples], dtype=torch.long)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"images": images, "labels": labels}, tmp)
    os.replace(tmp, path)
    log(f"data: decoded {n} images of {w}x{h} px once to a uint8 tensor ({images.numel() / 2 ** 20:.0f} MB, "
        f"cached at {path})")
    return images, labels


def _free_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2 ** 30


# ---- batched augmentation ---------------------------------------------------------------------
def crop_boxes(n: int, height: int, width: int, scale, ratio, g: torch.Generator) -> torch.Tensor:
    """n boxes (top, left, h, w) by torchvision's RandomResizedCrop.get_params, vectorised:
    10 tries each, the first that fits wins, else the centre crop of the clamped aspect ratio."""
    area = height * width
    tries = 10
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, generator=g, dtype=torch.float64))
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, tries, generator=g, dtype=torch.float64))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    rows = torch.arange(n)
    pick = first.clamp(min=0)
    bw, bh = w[rows, pick], h[rows, pick]
    top = (u[:, 0] * (height - bh + 1)).floor()
    left = (u[:, 1] * (width - bw + 1)).floor()
    # fallback: centre crop with the aspect ratio clamped to `ratio`
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fh, fw = height, round(height * max(ratio))
    else:
        fw, fh = width, height
    miss = first < 0
    bw, bh = torch.where(miss, float(fw), bw), torch.where(miss, float(fh), bh)
    top = torch.where(miss, float((height - fh) // 2), top)
    left = torch.where(miss, float((width - fw) // 2), left)
    return torch.stack([top, left, bh, bw], 1)


def augment(images: torch.Tensor, aug: dict, g: torch.Generator) -> torch.Tensor:
    """uint8 B x 3 x H x W (on the training device) -> normalised float B x 3 x S x S."""
    n, _, height, width = images.shape
    boxes = crop_boxes(n, height, width, aug["scale"], aug["ratio"], g)
    flip = torch.rand(n, generator=g) < aug["flip"]
    top, left, bh, bw = boxes.unbind(1)
    sx = bw / width * torch.where(flip, -1.0, 1.0).double()
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2] = sx, (2 * left + bw) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = bh / height, (2 * top + bh) / height - 1
    out_h, out_w = aug["size"]
    dev = images.device
    grid = F.affine_grid(theta.float().to(dev), [n, 3, out_h, out_w], align_corners=False)
    x = F.grid_sample(images.float(), grid, mode=aug["mode"], padding_mode="border", align_corners=False)
    mean = torch.tensor(aug["mean"], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor(aug["std"], device=dev).view(1, 3, 1, 1) * 255
    return (x.clamp_(0, 255) - mean) / std


class TensorLoader:
    """Iterates (images, labels) batches like the engine's DataLoader: the sampler's order,
    whole batches only; the images already on `device`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, aug: dict, *, sampler, batch_size: int,
                 generator: torch.Generator, device: torch.device):
        self.images, self.labels = images.to(device), labels
        self.aug, self.sampler, self.batch_size, self.generator = aug, sampler, batch_size, generator
        self.device = device

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        epoch_seed = self.generator.initial_seed()
        rank = getattr(self.sampler, "rank", 0)          # processes draw different crops for their batch b
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            key = hashlib.sha256(f"{epoch_seed}/{rank}/{b}".encode()).digest()
            g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") >> 1)
            yield augment(self.images[idx.to(self.images.device)], self.aug, g), self.labels[idx]
