"""ImageFolder against os.listdir, stratified_subset's counts and seeds, the transforms' geometry,
and the bad-input errors."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from maebench.data import shapes
from maebench.data.imagefolder import ImageFolder, stratified_subset
from maebench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, classification_eval, classification_train
from maebench.errors import MaebenchError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    shapes.prepare(out, shapes.ShapesOptions(classes=4, train_per_class=6, val_per_class=3), kinds=("classification",))
    return out / "classification"


@pytest.mark.parametrize("split", ["train", "val"])
def test_classes_samples_and_labels_follow_the_directory(root, split):
    ds = ImageFolder(root, split)
    classes = sorted(os.listdir(root / split))
    assert ds.classes == classes == ["circle", "ring", "square", "triangle"]
    assert ds.class_to_idx == {c: i for i, c in enumerate(classes)}
    expected = [(str(root / split / c / f), i) for i, c in enumerate(classes) for f in sorted(os.listdir(root / split / c))]
    assert ds.samples == expected
    assert ds.targets == [label for _, label in expected] and len(ds) == len(expected)
    image, label = ds[len(ds) - 1]
    assert image.mode == "RGB" and image.size == (32, 32) and label == 3


def test_transform_is_applied(root):
    ds = ImageFolder(root, "val", transform=classification_eval(32, IMAGENET_MEAN, IMAGENET_STD))
    x, label = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and label == 0


def test_val_shares_trains_labels_when_a_class_folder_is_missing(tmp_path):
    for split, names in (("train", ["a", "b", "c"]), ("val", ["a", "c"])):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(tmp_path / split / name / "x.png")
    val = ImageFolder(tmp_path, "val")
    assert val.classes == ["a", "b", "c"] and val.targets == [0, 2]
    (tmp_path / "val" / "d").mkdir()
    with pytest.raises(MaebenchError, match="class folder\\(s\\) d are not in"):
        ImageFolder(tmp_path, "val")


def test_non_image_files_are_ignored(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "a" / "x.JPG")
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    assert [os.path.basename(p) for p, _ in ImageFolder(tmp_path).samples] == ["x.JPG"]


def test_missing_directories_are_named(tmp_path):
    with pytest.raises(MaebenchError, match="not found") as err:
        ImageFolder(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    tmp_path.joinpath("train").mkdir()
    with pytest.raises(MaebenchError, match="'val' split directory not found") as err:
        ImageFolder(tmp_path, "val")
    assert str(tmp_path / "val") in str(err.value)


@pytest.mark.parametrize("name, damage", [
    ("bad.jpg", lambda good: b"\xff\xd8\xff\xe0 this is not a jpeg"),
    ("cut.jpg", lambda good: good[: len(good) // 2]),
    ("cut.png", lambda good: good[: len(good) - 30]),
])
def test_corrupt_images_are_named_on_load(tmp_path, name, damage):
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    pixels = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / name)
    (folder / name).write_bytes(damage((folder / name).read_bytes()))
    ds = ImageFolder(tmp_path)
    with pytest.raises(MaebenchError) as err:
        ds[0]
    assert str(folder / name) in str(err.value) and "\n" not in str(err.value)


def test_subset_keeps_labels(root):
    ds = ImageFolder(root, "train")
    sub = ds.subset([0, 7, 23])
    assert len(sub) == 3 and sub.targets == [0, 1, 3] and sub.classes == ds.classes
    assert sub.samples[1] == ds.samples[7] and len(ds) == 24


TARGETS = [0] * 10 + [1] * 7 + [2] * 4 + [0] * 5  # class 0 has 15 samples, interleaved


def per_class(indices):
    return {c: sum(TARGETS[i] == c for i in indices) for c in (0, 1, 2)}


def test_stratified_subset_exact_counts():
    chosen = stratified_subset(TARGETS, labels_per_class=3, seed=0)
    assert per_class(chosen) == {0: 3, 1: 3, 2: 3}
    assert chosen == sorted(set(chosen))
    assert per_class(stratified_subset(TARGETS, fraction=0.5)) == {0: 8, 1: 4, 2: 2}  # round(7.5)=8, round(3.5)=4
    assert per_class(stratified_subset(TARGETS, fraction=0.01)) == {0: 1, 1: 1, 2: 1}  # at least one each
    assert sorted(stratified_subset(TARGETS, fraction=1.0)) == list(range(len(TARGETS)))


def test_stratified_subset_seeds():
    a = stratified_subset(TARGETS, labels_per_class=2, seed=0)
    assert a == stratified_subset(TARGETS, labels_per_class=2, seed=0)
    assert a != stratified_subset(TARGETS, labels_per_class=2, seed=1)
    assert set(a) <= set(stratified_subset(TARGETS, labels_per_class=3, seed=0))  # nested for one seed
    # a class's pick does not depend on the other classes
    only_class_1 = [i for i in a if TARGETS[i] == 1]
    relabelled = [t if t == 1 else 5 for t in TARGETS]
    assert only_class_1 == [i for i in stratified_subset(relabelled, labels_per_class=2, seed=0) if TARGETS[i] == 1]


def test_stratified_subset_bad_arguments():
    with pytest.raises(MaebenchError, match="class 2 has 4 samples"):
        stratified_subset(TARGETS, labels_per_class=5)
    with pytest.raises(MaebenchError, match="exactly one"):
        stratified_subset(TARGETS)
    with pytest.raises(MaebenchError, match="exactly one"):
        stratified_subset(TARGETS, labels_per_class=1, fraction=0.5)
    with pytest.raises(MaebenchError, match="fraction"):
        stratified_subset(TARGETS, fraction=0)


def bordered(size: int, border: int) -> Image.Image:
    """Red border `border` px wide around a blue centre."""
    a = np.zeros((size, size, 3), np.uint8)
    a[..., 0] = 255
    a[border:size - border, border:size - border] = (0, 0, 255)
    return Image.fromarray(a)


def test_eval_transform_resizes_then_center_crops():
    x = classification_eval(224, mean=(0, 0, 0), std=(1, 1, 1))(bordered(256, 16))
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x[2], torch.ones(224, 224), atol=0.02) and x[0].abs().max() < 0.02  # border cropped away


def test_eval_transform_only_resizes_tiny_images():
    x = classification_eval(32, mean=(0, 0, 0), std=(1, 1, 1))(bordered(32, 2))
    assert x.shape == (3, 32, 32) and torch.allclose(x[0, 0], torch.ones(32))  # border kept


def test_train_transform_shape_and_normalisation():
    torch.manual_seed(0)
    t = classification_train(16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = t(Image.new("RGB", (40, 30), (255, 0, 128)))
    assert x.shape == (3, 16, 16)
    assert torch.allclose(x[0], torch.ones(16, 16), atol=1e-3) and torch.allclose(x[1], -torch.ones(16, 16), atol=1e-3)
    names = [type(s).__name__ for s in t.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert t.transforms[0].scale == (0.2, 1.0) and t.transforms[0].interpolation.value == "bicubic"
