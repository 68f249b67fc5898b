"""The generated benchmark: byte-identical regeneration, the COCO quirks it promises (checked
with pycocotools and numpy, not with our readers), atomic publication and default_dataset."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maebench.data import default_dataset, shapes
from maebench.errors import MaebenchError, UsageError

# pycocotools (the reference here) warns about numpy 2's copy keyword on every decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SMALL = shapes.ShapesOptions(classes=3, train_per_class=4, val_per_class=2, coco_train_images=8,
                             coco_val_images=4, ade_train_images=4, ade_val_images=2)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The default-size benchmark, generated once for this module."""
    out = tmp_path_factory.mktemp("shapes")
    shapes.prepare(out)
    return out


def test_same_options_give_byte_identical_files(generated, tmp_path):
    shapes.prepare(tmp_path / "again")
    first, second = tree_hashes(generated), tree_hashes(tmp_path / "again")
    assert len(first) > 1400  # 1200 classification PNGs + 80 COCO + 160 ADE files + json/meta
    assert first == second


def test_another_seed_gives_other_images(tmp_path):
    shapes.prepare(tmp_path / "a", SMALL, kinds=("classification",))
    shapes.prepare(tmp_path / "b", shapes.ShapesOptions(**{**SMALL.__dict__, "seed": 1}), kinds=("classification",))
    a, b = tree_hashes(tmp_path / "a/classification"), tree_hashes(tmp_path / "b/classification")
    assert a.keys() == b.keys()
    pngs = [k for k in a if k.endswith(".png")]
    assert all(a[k] != b[k] for k in pngs)


def test_no_temporary_directories_are_left(generated):
    assert sorted(os.listdir(generated)) == ["README.txt", "ade20k", "classification", "coco"]


def test_classification_layout_and_counts(generated):
    root = generated / "classification"
    meta = json.loads((root / "meta.json").read_text())
    assert meta["img_size"] == 32 and meta["num_classes"] == 10
    for split, n in (("train", 100), ("val", 20)):
        assert sorted(os.listdir(root / split)) == sorted(meta["classes"])
        for name in meta["classes"]:
            files = os.listdir(root / split / name)
            assert len(files) == n and all(f.endswith(".png") for f in files)
    with Image.open(next((root / "val" / "star").iterdir())) as img:
        assert img.size == (32, 32) and img.mode == "RGB"


def test_classification_images_are_not_all_alike(generated):
    """Random position, size and colour: the per-pixel spread across one class is large."""
    folder = generated / "classification" / "train" / "circle"
    stack = np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in sorted(folder.iterdir())[:50]])
    assert stack.std(axis=0).mean() > 40


def load_coco(generated, split):
    from pycocotools.coco import COCO
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(generated / "coco" / "annotations" / f"instances_{split}.json"))


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_has_the_promised_quirks(generated, split):
    coco = load_coco(generated, split)
    anns = coco.dataset["annotations"]
    assert sorted(coco.getCatIds()) == [3, 7, 12, 40]
    kinds = {("polygon" if isinstance(a["segmentation"], list) else
              "rle-str" if isinstance(a["segmentation"]["counts"], str) else "rle-list") for a in anns}
    assert kinds == {"polygon", "rle-str", "rle-list"}
    crowd = [a for a in anns if a["iscrowd"]]
    assert crowd and all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
    assert set(coco.getImgIds()) - {a["image_id"] for a in anns}, "some images have no annotations"
    ids = [a["id"] for a in anns]
    assert min(ids) > 1 and len(set(ids)) == len(ids) and ids != list(range(ids[0], ids[0] + len(ids)))
    for img in coco.dataset["images"]:
        assert (generated / "coco" / split / img["file_name"]).is_file()


def test_coco_areas_and_boxes_match_the_masks(generated):
    """area = mask pixel count and bbox = tight pixel extent, for every annotation (numpy reference)."""
    coco = load_coco(generated, "train")
    for ann in coco.dataset["annotations"]:
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        assert ann["area"] == mask.sum() > 0
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_coco_objects_do_not_overlap(generated):
    coco = load_coco(generated, "train")
    for iid in coco.getImgIds():
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=iid))]
        if masks:
            assert np.sum(masks, axis=0).max() == 1


def test_uncompressed_rle_decodes_to_its_mask():
    from pycocotools import mask as mask_utils
    from maebench.data.shapes_coco import uncompressed_rle

    rng = np.random.default_rng(0)
    for first in (0, 1):
        mask = rng.random((7, 5)) < 0.4
        mask[0, 0] = first
        rle = mask_utils.frPyObjects(uncompressed_rle(mask), 7, 5)
        assert (mask_utils.decode(rle) == mask).all()


def test_ade20k_layout_and_label_values(generated):
    root = generated / "ade20k"
    for folder, n in (("training", 64), ("validation", 16)):
        images = sorted(p.stem for p in (root / "images" / folder).glob("*.jpg"))
        labels = sorted(p.stem for p in (root / "annotations" / folder).glob("*.png"))
        assert images == labels and len(images) == n
    values = set()
    for p in (root / "annotations" / "training").glob("*.png"):
        with Image.open(p) as img:
            assert img.mode == "L" and img.size == (64, 64)
            values |= set(np.unique(np.asarray(img)).tolist())
    assert values == set(range(9))  # 0 = other, 1..8 classes


def test_meta_records_the_options(generated):
    meta = json.loads((generated / "coco" / "meta.json").read_text())
    assert (meta["seed"], meta["img_size"], meta["train_images"], meta["val_images"]) == (0, 128, 64, 16)
    assert (generated / "README.txt").is_file()


def test_bad_options_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="--classes"):
        shapes.prepare(tmp_path, shapes.ShapesOptions(classes=11))
    with pytest.raises(UsageError, match="--coco-val-images"):
        shapes.prepare(tmp_path, shapes.ShapesOptions(coco_val_images=0))


def test_a_crash_leaves_no_half_written_set(tmp_path, monkeypatch):
    from maebench.data import shapes_ade20k

    def crash(root, *args):
        (root / "images").mkdir()
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(shapes_ade20k, "write", crash)
    with pytest.raises(RuntimeError):
        shapes.prepare(tmp_path, SMALL, kinds=("ade20k",))
    assert os.listdir(tmp_path) == []


def test_a_foreign_directory_is_not_replaced(tmp_path):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "mine.txt").write_text("keep me")
    with pytest.raises(MaebenchError, match="not written by maebench"):
        shapes.prepare(tmp_path, SMALL, kinds=("coco",))
    assert (tmp_path / "coco" / "mine.txt").read_text() == "keep me"


def test_regenerating_replaces_a_set_written_by_maebench(tmp_path):
    shapes.prepare(tmp_path, SMALL, kinds=("classification",))
    shapes.prepare(tmp_path, shapes.ShapesOptions(**{**SMALL.__dict__, "classes": 2}), kinds=("classification",))
    assert sorted(os.listdir(tmp_path / "classification" / "train")) == ["circle", "square"]
    assert sorted(os.listdir(tmp_path)) == ["README.txt", "classification"]


def test_default_dataset_generates_once_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    path = default_dataset("ade20k")
    assert path == tmp_path / "home" / "data" / "shapes" / "ade20k"
    assert (path / "images" / "training" / "ADE_train_00000064.jpg").is_file()
    stamp = (path / "meta.json").stat().st_mtime_ns
    assert default_dataset("ade20k") == path
    assert (path / "meta.json").stat().st_mtime_ns == stamp
    assert sorted(os.listdir(path.parent)) == ["README.txt", "ade20k"]
    with pytest.raises(UsageError, match="did you mean: coco"):
        default_dataset("cocoo")


def test_prepare_command(tmp_path):
    env = {**os.environ, "MAEBENCH_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "maebench", "data", "prepare", "shapes", "--only", "classification",
           "--classes", "2", "--train-per-class", "3", "--val-per-class", "1", "--img-size", "24"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "home" / "data" / "shapes" / "classification"
    assert len(os.listdir(root / "train" / "square")) == 3
    with Image.open(root / "val" / "circle" / "circle_00000.png") as img:
        assert img.size == (24, 24)
    bad = subprocess.run(cmd + ["--classes", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--classes" in bad.stderr and "Traceback" not in bad.stderr
