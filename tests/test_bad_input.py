"""The bad-input corpus (tests/badinput/, written by make_corpus.py) through the real command line,
one case per test, each in its own `python -m maebench` process and its own MAEBENCH_HOME.

A refused input exits non-zero with exactly one stderr line, `maebench: error: ...`, naming the
file, key or value at fault (no traceback), and leaves no results row and the registry
byte-identical. The exceptions, and why:
- COCO training annotations with a zero-width box or a 2-point polygon are counted skips, as
  documented in maebench/data/coco.py: the run trains on the rest, warns with the counts and the
  file, and stores a done row.
- A corrupt JPEG inside an image folder is found when a training step loads it: the image files
  are not all decoded before a run starts (ImageNet has 1.28M; `maebench data check` does that
  on request), so the run has started and its row ends `failed`, carrying the same one line.
- A state dict whose keys carry DDP's `module.` prefix registers, with the prefix stripped.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maebench.results import ResultsStore

CORPUS = Path(__file__).resolve().parent / "badinput"
_spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
make_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_corpus)
TIMEOUT = 600
FAST = ["--epochs", "1", "--set", "num_workers=0"]
ADE = ["--set", "img_size=32", "--set", "crop_size=32", "--set", "channels=16", "--set", "aux_channels=8"]


def maebench(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MAEBENCH_RESULTS"}
    env.update(MAEBENCH_HOME=str(home), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "maebench", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Generated classification (3 classes, 16 px) and ADE20K-layout (32 px) sets."""
    out = tmp_path_factory.mktemp("shapes")
    r = maebench(["data", "prepare", "shapes", "--out", out, "--only", "classification", "--only", "ade20k",
                  "--classes", "3", "--img-size", "16", "--train-per-class", "8", "--val-per-class", "3",
                  "--ade-img-size", "32", "--ade-train-images", "4", "--ade-val-images", "3"], out / "home", out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def registered_home(tmp_path_factory):
    """A MAEBENCH_HOME holding one registered backbone, made once."""
    root = tmp_path_factory.mktemp("registered")
    make_corpus.module_prefixed_checkpoint(root / "existing.pth", seed=1)
    r = maebench(["backbones", "register", "existing", "--checkpoint", root / "existing.pth"], root / "home", root)
    assert r.returncode == 0, r.stderr
    return root / "home"


@pytest.fixture
def home(_isolated_home, registered_home):
    """This test's MAEBENCH_HOME, a copy of `registered_home`, so that 'the registry is
    unchanged' compares real bytes."""
    shutil.copytree(registered_home, _isolated_home)
    return _isolated_home


def snapshot(home: Path) -> bytes:
    return (home / "registry.json").read_bytes()


def rows(home: Path):
    return ResultsStore(home / "results.sqlite").rows(status=None)


def refused(args, home: Path, cwd: Path, code: int, *named: str) -> str:
    """Run a command that must be refused; returns its one error line."""
    before = snapshot(home)
    r = maebench(args, home, cwd)
    assert r.returncode == code, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("maebench: error: "), r.stderr[-3000:]
    for text in named:
        assert text in lines[0], lines[0]
    assert rows(home) == []
    assert snapshot(home) == before
    return lines[0]


def with_file(src_dir: Path, dest: Path, replace: str, corpus_file: str) -> Path:
    """A copy of a generated set with one file replaced by a corpus file."""
    shutil.copytree(src_dir, dest)
    shutil.copyfile(CORPUS / corpus_file, dest / replace)
    return dest


# ---- images and label maps ----------------------------------------------------------------------
def test_truncated_png_label_map(shapes, home, tmp_path):
    data = with_file(shapes / "ade20k", tmp_path / "ade", "annotations/training/ADE_train_00000002.png", "truncated.png")
    refused(["run", "--task", "ade20k", "--backbone", "scratch-vit-micro", "--data", data, *ADE, *FAST],
            home, tmp_path, 1, f"cannot read label map {data / 'annotations/training/ADE_train_00000002.png'}")


def test_ade_label_above_the_class_count(shapes, home, tmp_path):
    bad = "annotations/validation/ADE_val_00000002.png"
    data = with_file(shapes / "ade20k", tmp_path / "ade", bad, "label_above_classes.png")
    refused(["run", "--task", "ade20k", "--backbone", "scratch-vit-micro", "--data", data, *ADE, *FAST],
            home, tmp_path, 1, str(data / bad), "label value 40 is out of range for 8 classes")


def test_label_map_of_the_wrong_size(shapes, home, tmp_path):
    bad = "annotations/validation/ADE_val_00000002.png"
    data = with_file(shapes / "ade20k", tmp_path / "ade", bad, "label_wrong_size.png")
    refused(["run", "--task", "ade20k", "--backbone", "scratch-vit-micro", "--data", data, *ADE, *FAST],
            home, tmp_path, 1, f"label map {data / bad} is 16x8 but its image", "is 32x32")


def test_corrupt_jpeg_in_an_image_folder_fails_the_started_run_with_one_line(shapes, home, tmp_path):
    """25 training images in batches of 5: every image is loaded in the epoch, by a DataLoader
    worker process."""
    data = with_file(shapes / "classification", tmp_path / "cls", "train/circle/corrupt.jpg", "corrupt.jpg")
    before = snapshot(home)
    r = maebench(["run", "--task", "linprobe", "--backbone", "scratch-vit-micro", "--data", data, "--epochs", "1",
                  "--batch-size", "5", "--set", "img_size=16", "--set", "num_workers=2"], home, tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.replace("\r", "\n").split("\n") if "maebench: error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"maebench: error: cannot read image {data}/train/circle/corrupt.jpg")
    (row,) = rows(home)
    assert row.status == "failed" and "corrupt.jpg" in row.error and row.metrics == {}
    assert snapshot(home) == before


# ---- COCO annotation files ------------------------------------------------------------------------
def coco(name: str) -> list:
    return ["run", "--task", "coco", "--backbone", "scratch-vit-micro", "--train-json", CORPUS / "coco" / f"{name}.json",
            "--val-json", CORPUS / "coco" / "val.json", "--images", CORPUS / "coco" / "images",
            "--batch-size", "2", *FAST]


@pytest.mark.parametrize("name, message", [
    ("missing_images", "missing 'images' list"),
    ("missing_categories", "missing 'categories' list"),
    ("unlisted_image", "annotation id 2 refers to image id 99, which is not listed in 'images'"),
    ("undeclared_category", "annotation id 2 has category id 12, which is not declared in 'categories'"),
    ("image_twice", "image id 1 is listed twice"),
])
def test_coco_annotation_file(name, message, home, tmp_path):
    refused(coco(name), home, tmp_path, 1, f"{CORPUS / 'coco' / name}.json: {message}")


@pytest.fixture
def degenerate_run(home, tmp_path):
    r = maebench(coco("degenerate"), home, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, home


def test_coco_zero_width_box_is_a_counted_skip(degenerate_run):
    """Both degenerate annotations live in one file (one training run serves this test and the
    next): the warning names the file and counts each kind; the run trains on the rest."""
    r, home = degenerate_run
    warning = f"{CORPUS / 'coco' / 'degenerate.json'}: skipped 2 degenerate annotations for training"
    assert warning in r.stderr and "1 zero-size boxes" in r.stderr
    assert "'degenerate_box': 1" in r.stdout                        # the log line of what training skipped
    (row,) = rows(home)
    assert row.status == "done" and row.metrics["bbox/AP"] is not None


def test_coco_two_point_polygon_is_a_counted_skip(degenerate_run):
    r, home = degenerate_run
    assert "1 polygons with < 3 points" in r.stderr
    assert "'degenerate_polygon': 1" in r.stdout
    assert "Traceback" not in r.stderr
    (row,) = rows(home)
    assert row.status == "done"


# ---- checkpoints ------------------------------------------------------------------------------------
def test_truncated_checkpoint(home, tmp_path):
    path = CORPUS / "truncated_checkpoint.pth"
    refused(["backbones", "register", "broken", "--checkpoint", path], home, tmp_path, 1,
            f"{path}: cannot read checkpoint, truncated or corrupt")


def test_checkpoint_of_another_architecture(home, tmp_path):
    path = CORPUS / "other_architecture.pth"
    refused(["backbones", "register", "resnet", "--checkpoint", path], home, tmp_path, 2,
            f"{path}: cannot tell the architecture (no ViT patch embedding", "pass --arch")
    refused(["backbones", "register", "resnet", "--checkpoint", path, "--arch", "vit-tiny"], home, tmp_path, 1,
            f"{path}: does not fit vit-tiny", "unexpected keys conv1.weight")


def test_vit_of_another_size_than_claimed(home, tmp_path):
    make_corpus.module_prefixed_checkpoint(tmp_path / "micro.pth")
    refused(["backbones", "register", "claimed-tiny", "--checkpoint", tmp_path / "micro.pth", "--arch", "vit-tiny"],
            home, tmp_path, 1, f"{tmp_path / 'micro.pth'}: does not fit vit-tiny", "look like vit-micro")


def test_state_dict_with_module_prefixes_registers_with_the_prefix_stripped(home, tmp_path):
    import torch

    from backbones import registry
    state = make_corpus.module_prefixed_checkpoint(tmp_path / "ddp.pth", seed=2)
    r = maebench(["backbones", "register", "from-ddp", "--checkpoint", tmp_path / "ddp.pth"], home, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "" and "registered from-ddp: vit-micro, patch 4, 32 px" in r.stdout
    model, entry = registry.load("from-ddp")
    loaded = model.state_dict()
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    assert rows(home) == []


# ---- names, config keys and values --------------------------------------------------------------------
def test_unknown_backbone(home, tmp_path):
    refused(["run", "--task", "finetune", "--backbone", "scratch-vit-mikro"], home, tmp_path, 2,
            "unknown backbone 'scratch-vit-mikro' (did you mean: scratch-vit-micro")


def test_unknown_config_key_in_a_yaml_file(home, tmp_path):
    path = CORPUS / "unknown_key.yaml"
    refused(["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--config", path], home, tmp_path, 2,
            f"unknown config key 'learning_rate' in {path}")


def test_negative_learning_rate(home, tmp_path):
    refused(["pretrain", "--method", "mae", "--arch", "vit-micro", "--config", CORPUS / "negative_lr.yaml"],
            home, tmp_path, 2, "config key 'base_lr' must be >= 0, got -0.001")


@pytest.mark.parametrize("ratio", ["0", "1", "1.5", "-0.25"])
def test_mask_ratio_outside_0_1(ratio, home, tmp_path):
    refused(["pretrain", "--method", "mae", "--arch", "vit-micro", "--mask-ratio", ratio], home, tmp_path, 2,
            "config key 'mask_ratio' must lie strictly between 0 and 1", f"got {float(ratio)}")


# ---- where results and runs go ---------------------------------------------------------------------
def test_results_store_that_is_not_sqlite(shapes, home, tmp_path):
    bad = tmp_path / "results.sqlite"
    bad.write_text("not a database\n")
    refused(["run", "--task", "knn", "--backbone", "scratch-vit-micro", "--data", shapes / "classification",
             "--set", "img_size=16", "--set", "num_workers=0", "--results", bad], home, tmp_path, 1,
            f"cannot use results store {bad}: file is not a database")
    assert bad.read_text() == "not a database\n"


def test_run_directory_under_a_file(shapes, home, tmp_path):
    (tmp_path / "a-file").write_text("")
    refused(["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--data", shapes / "classification",
             "--batch-size", "8", "--set", "img_size=16", *FAST, "--out", tmp_path / "a-file" / "run"],
            home, tmp_path, 1, f"cannot create run directory {tmp_path / 'a-file' / 'run'}: Not a directory")
