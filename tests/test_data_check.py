"""`maebench data check`: exit 0 on clean sets, exit 1 listing every problem on broken ones."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from maebench.data import shapes
from maebench.data.check import check

SMALL = shapes.ShapesOptions(classes=3, train_per_class=4, val_per_class=2, coco_train_images=8,
                             coco_val_images=4, ade_train_images=4, ade_val_images=2)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    shapes.prepare(out, SMALL)
    return out


@pytest.fixture
def copy(clean, tmp_path):
    def _copy(kind):
        shutil.copytree(clean / kind, tmp_path / kind)
        return tmp_path / kind
    return _copy


def run_check(task, path, *extra):
    env = {**os.environ, "MAEBENCH_HOME": str(path) + "-home"}
    return subprocess.run([sys.executable, "-m", "maebench", "data", "check", "--task", task, str(path), *extra],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("task, expect", [
    ("classification", ["train: 12 images in 3 classes", "classes: circle, square, triangle"]),
    ("coco", ["train: 8 images", "categories (4): 3:circle, 7:square, 12:triangle, 40:ring"]),
    ("ade20k", ["training: 4 image/label pairs", "classes (8, label 0 = other/ignored): sky, ground"]),
])
def test_clean_sets_exit_zero(clean, task, expect):
    done = run_check(task, clean / task)
    assert done.returncode == 0, done.stdout + done.stderr
    for text in expect:
        assert text in done.stdout
    assert "no problems found" in done.stdout


def test_classification_problems_are_all_listed(copy):
    root = copy("classification")
    png = sorted((root / "train" / "square").iterdir())[0]
    png.write_bytes(png.read_bytes()[:-40])
    bogus = root / "val" / "circle" / "bogus.jpg"
    bogus.write_bytes(b"not an image at all")
    (root / "train" / "empty").mkdir()
    done = run_check("classification", root)
    assert done.returncode == 1
    assert f"broken image {png}" in done.stdout and f"broken image {bogus}" in done.stdout
    assert f"class folder {root / 'train' / 'empty'} has no images" in done.stdout
    assert "3 problem(s)" in done.stdout


def test_coco_problems_are_all_listed(copy):
    root = copy("coco")
    ann_file = root / "annotations" / "instances_val.json"
    data = json.loads(ann_file.read_text())
    missing = root / "val" / data["images"][0]["file_name"]
    missing.unlink()
    broken = root / "val" / data["images"][1]["file_name"]
    broken.write_bytes(broken.read_bytes()[:300])
    data["annotations"][0]["category_id"] = 99
    data["annotations"][1]["image_id"] = 424242
    data["images"].append(dict(data["images"][2]))
    ann_file.write_text(json.dumps(data))
    report = check("coco", root)
    text = "\n".join(report.problems)
    assert f"missing image file {missing}" in text
    assert f"broken image {broken}" in text
    assert f"annotation id {data['annotations'][0]['id']} has category id 99" in text
    assert f"annotation id {data['annotations'][1]['id']} refers to image id 424242" in text
    assert f"image id {data['images'][2]['id']} is listed twice" in text
    assert len(report.problems) == 5
    assert run_check("coco", root).returncode == 1


def test_ade20k_problems_are_all_listed(copy):
    root = copy("ade20k")
    labels = root / "annotations" / "training"
    high = labels / "ADE_train_00000001.png"
    Image.fromarray(np.full((64, 64), 20, np.uint8)).save(high)
    small = labels / "ADE_train_00000002.png"
    Image.fromarray(np.zeros((10, 64), np.uint8)).save(small)
    (root / "images" / "validation" / "ADE_val_00000001.jpg").unlink()
    done = run_check("ade20k", root)
    assert done.returncode == 1
    assert f"{high}: label value 20 is out of range for 8 classes" in done.stdout
    assert f"label map {small} is 64x10" in done.stdout
    assert "ADE_val_00000001.png has no image" in done.stdout
    assert "3 problem(s)" in done.stdout


def test_missing_directory_and_bad_task(tmp_path):
    done = run_check("coco", tmp_path / "nowhere")
    assert done.returncode == 1 and str(tmp_path / "nowhere") in done.stderr and "Traceback" not in done.stderr
    done = run_check("segmentation", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    done = run_check("coco", tmp_path)
    assert done.returncode == 1 and "not a COCO instances directory" in done.stdout


def test_check_does_not_import_torch(clean):
    code = ("import sys; from maebench.cli import main; rc = main(['data', 'check', '--task', 'coco', "
            f"{str(clean / 'coco')!r}]); assert 'torch' not in sys.modules; raise SystemExit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
