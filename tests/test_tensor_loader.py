"""The tensor loader (maebench/data/tensor_loader.py): the pretraining transform read off the
transform itself, crop boxes by torchvision's rule, the batched crop + flip against a direct
computation, decoding once per image set, and exact resume through engine.fit."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from torchvision import transforms as T

from maebench.data import tensor_loader as tl
from maebench.data.imagefolder import ImageFolder
from maebench.data.transforms import classification_eval, classification_train
from maebench.engine import fit
from loop_config import loop_cfg


def write_set(root, n=32, size=12):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / "train" / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return root


def test_the_pretraining_transform_is_recognised_with_its_parameters_and_others_are_not():
    aug = tl.augmentation_of(classification_train(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), scale=(0.3, 0.9)))
    assert aug == {"size": (32, 32), "scale": (0.3, 0.9), "ratio": (3 / 4, 4 / 3), "mode": "bicubic", "flip": 0.5,
                   "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    assert tl.augmentation_of(classification_eval(32)) is None
    assert tl.augmentation_of(T.Compose([T.RandomResizedCrop(8), T.ToTensor()])) is None


def test_the_fine_tuning_recipe_without_randaug_jitter_or_erasing_is_the_same_augmentation():
    from maebench.classification import train_transform
    mild = train_transform(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), scale=(0.5, 1.0), rand_augment=None, reprob=0.0)
    assert tl.augmentation_of(mild) == {"size": (32, 32), "scale": (0.5, 1.0), "ratio": (3 / 4, 4 / 3),
                                        "mode": "bicubic", "flip": 0.5,
                                        "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    for strong in ({"rand_augment": "rand-m9-mstd0.5-inc1", "reprob": 0.0},
                   {"rand_augment": None, "reprob": 0.25},
                   {"rand_augment": None, "reprob": 0.0, "color_jitter": 0.4}):
        tf = train_transform(32, (0.5,) * 3, (0.25,) * 3, scale=(0.5, 1.0), **strong)
        assert tl.augmentation_of(tf) is None, strong


def test_crop_boxes_follow_random_resized_crop_rules():
    g = torch.Generator().manual_seed(0)
    boxes = tl.crop_boxes(4000, 28, 20, (0.2, 1.0), (3 / 4, 4 / 3), g)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 20).all()
    area = h * w / (28 * 20)
    assert area.min() >= 0.2 - 0.06 and area.max() <= 1.0 + 1e-9       # rounding of h and w only
    # torchvision's own sampler: the same distribution of crop areas (two-sample means within noise)
    torch.manual_seed(1)
    ref = torch.tensor([T.RandomResizedCrop.get_params(torch.zeros(1, 28, 20), [0.2, 1.0], [3 / 4, 4 / 3])
                        for _ in range(4000)], dtype=torch.float64)
    assert (ref[:, 2] * ref[:, 3] / 560).mean().item() == pytest.approx(area.mean().item(), abs=0.02)
    assert (ref[:, 2] / ref[:, 3]).mean().item() == pytest.approx((h / w).mean().item(), abs=0.03)


def test_full_crops_are_the_normalised_image_and_flips_mirror_it():
    img = torch.randint(0, 256, (3, 3, 10, 10), dtype=torch.uint8)
    base = dict(size=(10, 10), scale=(1.0, 1.0), ratio=(1.0, 1.0), mode="bicubic", mean=(0.5, 0.4, 0.3),
                std=(0.2, 0.3, 0.4))
    want = (img.float() / 255 - torch.tensor(base["mean"]).view(1, 3, 1, 1)) / torch.tensor(base["std"]).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(tl.augment(img, {**base, "flip": 0.0}, g), want, atol=1e-4)
    assert torch.allclose(tl.augment(img, {**base, "flip": 1.0}, g), want.flip(-1), atol=1e-4)


def test_a_set_is_decoded_once_and_read_from_the_cache_after(tmp_path):
    ds = ImageFolder(write_set(tmp_path / "set"), "train", transform=classification_train(8))
    lines = []
    images, labels = tl.decode(ds, log=lines.append)
    assert images.dtype == torch.uint8 and images.shape == (32, 3, 12, 12)
    path, label = ds.samples[5]
    assert torch.equal(images[5], torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))
    assert labels[5] == label and len(lines) == 1
    again = tl.decode(ds, log=lines.append)
    assert torch.equal(again[0], images) and len(lines) == 1          # no second decode


class Trap:
    def __init__(self, at=None):
        self.calls, self.at = 0, at

    def __call__(self, model, batch, device):
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("killed")
        x, y = batch
        return nn.functional.cross_entropy(model(nn.functional.dropout(x, 0.1)), y), {}


def train(root, out, loss_fn, resume=False, tensor_loader=True, log=lambda s: None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    ds = ImageFolder(root, "train", transform=classification_train(8))
    cfg = loop_cfg(epochs=3, batch_size=8, lr=0.1, num_workers=0, tensor_loader=tensor_loader, log_every=2)
    return fit(model, ds, loss_fn, cfg, out_dir=out, device=torch.device("cpu"), resume=resume, log=log)


def test_crash_then_resume_through_the_tensor_loader_equals_an_uninterrupted_run(tmp_path):
    root = write_set(tmp_path / "set")
    lines = []
    ref = train(root, tmp_path / "ref", Trap(), log=lines.append)
    assert any(x.startswith("loader: tensor loader") for x in lines)
    with pytest.raises(RuntimeError):
        train(root, tmp_path / "run", Trap(at=7))                       # dies in epoch 2, step 3 of 4
    resumed = train(root, tmp_path / "run", Trap(), resume=True)
    for a, b in zip(ref.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in ref.history]


def test_tensor_loader_off_or_an_unsupported_transform_uses_the_dataloader_and_says_why(tmp_path):
    root = write_set(tmp_path / "set", n=16)
    lines = []
    train(root, tmp_path / "off", Trap(), tensor_loader=False, log=lines.append)
    assert any("DataLoader" in x and "tensor_loader is off" in x for x in lines)
