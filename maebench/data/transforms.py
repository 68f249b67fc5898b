"""Standard classification transforms (torchvision, PIL in, normalised tensor out)."""
from __future__ import annotations

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Below this size, resize-then-center-crop mostly cuts off the object (a 32 px shape image
# would lose 2 px on every side), so eval just resizes.
MIN_CROP_SIZE = 64


def classification_train(img_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale=(0.2, 1.0)) -> T.Compose:
    """MAE pretraining / linear-probe augmentation: random-resized crop (bicubic) + flip."""
    return T.Compose([
        T.RandomResizedCrop(img_size, scale=tuple(scale), interpolation=InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


# MAE pretraining's augmentations (Table 1e); crop-rand is the paper's and the default.
PRETRAIN_AUGMENTATIONS = ("none", "crop-fixed", "crop-rand", "crop-rand-color")
FIXED_CROP = 0.875       # crop-fixed: a random crop of 0.875 of the side (224 of 256), resized back


def pretrain_augmentation(name: str, img_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          scale=(0.2, 1.0)) -> T.Compose:
    """Table 1e's rows: none (the whole image, resized; no flip), crop-fixed (a random crop of a
    fixed size + flip), crop-rand (random-resized crop of `scale` + flip: the paper's), crop-rand-color
    (crop-rand + colour jitter 0.4, as MoCo v3 and BYOL jitter). The first three are one
    random-resized crop with other bounds, so the in-memory tensor loader serves them too."""
    if name == "crop-rand-color":
        steps = classification_train(img_size, mean, std, scale).transforms
        return T.Compose([*steps[:2], T.ColorJitter(0.4, 0.4, 0.4), *steps[2:]])
    if name not in PRETRAIN_AUGMENTATIONS:
        raise ValueError(f"unknown augmentation '{name}'")
    area = {"none": 1.0, "crop-fixed": FIXED_CROP ** 2, "crop-rand": None}[name]
    return T.Compose([
        T.RandomResizedCrop(img_size, scale=tuple(scale) if area is None else (area, area),
                            ratio=(3 / 4, 4 / 3) if area is None else (1.0, 1.0),
                            interpolation=InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(0.0 if name == "none" else 0.5),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def classification_eval(img_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct: float = 0.875) -> T.Compose:
    """Resize the shorter side to img_size / crop_pct, center-crop img_size (224 -> 256 -> 224);
    for img_size < 64 or crop_pct >= 1, resize straight to img_size x img_size."""
    if img_size < MIN_CROP_SIZE or crop_pct >= 1:
        geometry = [T.Resize((img_size, img_size), interpolation=InterpolationMode.BICUBIC)]
    else:
        geometry = [T.Resize(int(img_size / crop_pct), interpolation=InterpolationMode.BICUBIC),
                    T.CenterCrop(img_size)]
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(mean, std)])
