"""SegmentationPairs: reduce_zero_label on a hand-made PNG, pairing by stem, and bad labels."""
import numpy as np
import pytest
from PIL import Image

from maebench.data import shapes
from maebench.data.ade20k import SegmentationPairs, resolve_ade20k
from maebench.errors import MaebenchError, UsageError

RAW = np.array([[0, 1, 2], [8, 255, 3]], dtype=np.uint8)


def make_pair(root, stem="a", label=RAW, image_size=None):
    (root / "img").mkdir(exist_ok=True)
    (root / "lab").mkdir(exist_ok=True)
    h, w = label.shape
    Image.new("RGB", image_size or (w, h), (1, 2, 3)).save(root / "img" / f"{stem}.jpg")
    Image.fromarray(label, mode="L").save(root / "lab" / f"{stem}.png")
    return root / "img", root / "lab"


def test_reduce_zero_label_mapping(tmp_path):
    image, label = SegmentationPairs(*make_pair(tmp_path), num_classes=8)[0]
    assert image.mode == "RGB" and image.size == (3, 2)
    assert label.dtype == np.int64
    assert label.tolist() == [[255, 0, 1], [7, 255, 2]]


def test_without_reduce_zero_label_values_are_kept(tmp_path):
    _, label = SegmentationPairs(*make_pair(tmp_path), num_classes=9, reduce_zero_label=False)[0]
    assert label.tolist() == [[0, 1, 2], [8, 255, 3]]


def test_custom_ignore_index(tmp_path):
    raw = np.array([[0, 1, 2]], dtype=np.uint8)
    _, label = SegmentationPairs(*make_pair(tmp_path, label=raw), num_classes=2, ignore_index=-1)[0]
    assert label.tolist() == [[-1, 0, 1]]


def test_label_above_class_count_is_named(tmp_path):
    images, labels = make_pair(tmp_path)
    ds = SegmentationPairs(images, labels, num_classes=7)  # stored 8 -> 7, out of 0..6
    with pytest.raises(MaebenchError, match="label value 8 is out of range for 7 classes") as err:
        ds[0]
    assert str(labels / "a.png") in str(err.value)


def test_label_of_the_wrong_size_is_named(tmp_path):
    images, labels = make_pair(tmp_path, image_size=(4, 2))
    with pytest.raises(MaebenchError, match="3x2 but its image") as err:
        SegmentationPairs(images, labels, num_classes=8)[0]
    assert str(labels / "a.png") in str(err.value)


def test_colour_label_map_is_refused(tmp_path):
    images, labels = make_pair(tmp_path)
    Image.new("RGB", (3, 2)).save(labels / "a.png")
    with pytest.raises(MaebenchError, match="single-channel") as err:
        SegmentationPairs(images, labels, num_classes=8)[0]
    assert str(labels / "a.png") in str(err.value)


def test_unreadable_label_is_named(tmp_path):
    images, labels = make_pair(tmp_path)
    (labels / "a.png").write_bytes((labels / "a.png").read_bytes()[:20])
    with pytest.raises(MaebenchError) as err:
        SegmentationPairs(images, labels, num_classes=8)[0]
    assert str(labels / "a.png") in str(err.value)


def test_missing_pairs_are_named_by_stem(tmp_path):
    images, labels = make_pair(tmp_path)
    Image.new("RGB", (3, 2)).save(images / "lonely.jpg")
    with pytest.raises(MaebenchError, match="lonely"):
        SegmentationPairs(images, labels, num_classes=8)
    (images / "lonely.jpg").unlink()
    Image.fromarray(RAW).save(labels / "orphan.png")
    with pytest.raises(MaebenchError, match="orphan"):
        SegmentationPairs(images, labels, num_classes=8)


def test_pairs_are_sorted_by_stem_and_transforms_get_both(tmp_path):
    for stem in ("b", "a", "c"):
        make_pair(tmp_path, stem)
    ds = SegmentationPairs(tmp_path / "img", tmp_path / "lab", num_classes=8,
                           transforms=lambda img, lab: (img.size, lab.shape))
    assert [p[0].rsplit("/", 1)[1] for p in ds.pairs] == ["a.jpg", "b.jpg", "c.jpg"]
    assert ds[0] == ((3, 2), (2, 3)) and len(ds) == 3


def test_resolve_ade20k(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        for folder in ("training", "validation"):
            (root / kind / folder).mkdir(parents=True)
    expected = (str(root / "images" / "validation"), str(root / "annotations" / "validation"))
    assert resolve_ade20k(root, "validation") == resolve_ade20k(root, "val") == expected
    assert resolve_ade20k(tmp_path, "val") == expected  # the folder holding ADEChallengeData2016/
    with pytest.raises(UsageError, match="did you mean"):
        resolve_ade20k(root, "trainign")
    (root / "annotations" / "training").rmdir()
    with pytest.raises(MaebenchError, match="not found") as err:
        resolve_ade20k(root, "train")
    assert str(root / "annotations" / "training") in str(err.value)


def test_generated_set_reads_like_its_pngs(tmp_path):
    shapes.prepare(tmp_path, shapes.ShapesOptions(ade_train_images=6, ade_val_images=2), kinds=("ade20k",))
    ds = SegmentationPairs(*resolve_ade20k(tmp_path / "ade20k", "training"), num_classes=8)
    assert len(ds) == 6
    for i in range(len(ds)):
        image, label = ds[i]
        raw = np.asarray(Image.open(ds.pairs[i][1])).astype(np.int64)
        assert image.size == (64, 64)
        assert np.array_equal(label, np.where(raw == 0, 255, raw - 1))
