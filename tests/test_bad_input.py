"""The bad-input corpus (tests/badinput/, written by make_corpus.py) through the real command line,
one case per test, each in its own `python -m maebench` process and its own MAEBENCH_HOME (a
copy of one that holds a registered backbone, so 'the registry is unchanged' compares bytes).

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
- COCO files as annotation tools export them (annotation ids from 0 or repeated, category id 0,
  no area / iscrowd / bbox, RLE counts as a list or a string, images without objects) are
  normalised with one note line: their own ground truth, fed back with the file's ids, scores AP
  100, and all of them at once train to a done row.

The command lines are independent: while a test waits for its own, the next test's already runs.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
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
ADE_TRAIN, ADE_VAL = "annotations/training/ADE_train_00000002.png", "annotations/validation/ADE_val_00000002.png"
COCO_NAMES = ("missing_images", "missing_categories", "unlisted_image", "undeclared_category", "image_twice")
QUIRKS = ("ids_from_0", "ids_repeated", "category_0", "no_area", "no_iscrowd", "no_bbox", "rle_list", "rle_string",
          "image_without_annotations")                  # normalised, not refused (maebench/data/coco_json.py)
LOCKS = {}                                             # case name -> a RunLock this process holds meanwhile


def maebench(args: list, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MAEBENCH_RESULTS"}
    env.update(MAEBENCH_HOME=str(home), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "maebench", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT)


def with_file(src_dir: Path, dest: Path, replace: str, corpus_file: str) -> Path:
    """A copy of a generated set with one file replaced by a corpus file."""
    shutil.copytree(src_dir, dest)
    shutil.copyfile(CORPUS / corpus_file, dest / replace)
    return dest


def coco(name: str) -> list:
    return ["run", "--task", "coco", "--backbone", "scratch-vit-micro", "--train-json", CORPUS / "coco" / f"{name}.json",
            "--val-json", CORPUS / "coco" / "val.json", "--images", CORPUS / "coco" / "images", "--batch-size", "2", *FAST]


def case_args(name: str, root: Path, shapes: Path) -> list:
    """The command line of case `name`, after writing whatever it needs under `root`."""
    ade = ["run", "--task", "ade20k", "--backbone", "scratch-vit-micro", *ADE, *FAST, "--data"]
    if name == "truncated_png":
        return ade + [with_file(shapes / "ade20k", root / "ade", ADE_TRAIN, "truncated.png")]
    if name == "label_above_classes":
        return ade + [with_file(shapes / "ade20k", root / "ade", ADE_VAL, "label_above_classes.png")]
    if name == "label_wrong_size":
        return ade + [with_file(shapes / "ade20k", root / "ade", ADE_VAL, "label_wrong_size.png")]
    if name == "corrupt_jpeg":   # 25 images in batches of 5: all are loaded, by DataLoader workers
        data = with_file(shapes / "classification", root / "cls", "train/circle/corrupt.jpg", "corrupt.jpg")
        return ["run", "--task", "linprobe", "--backbone", "scratch-vit-micro", "--data", data, "--epochs", "1",
                "--batch-size", "5", "--set", "img_size=16", "--set", "num_workers=2"]
    if name.startswith("coco_"):
        return coco(name[len("coco_"):])
    if name == "truncated_checkpoint":
        return ["backbones", "register", "broken", "--checkpoint", CORPUS / "truncated_checkpoint.pth"]
    if name == "other_architecture":
        return ["backbones", "register", "resnet", "--checkpoint", CORPUS / "other_architecture.pth"]
    if name == "other_architecture_as_vit_tiny":
        return ["backbones", "register", "resnet", "--checkpoint", CORPUS / "other_architecture.pth", "--arch", "vit-tiny"]
    if name == "micro_as_vit_tiny":
        make_corpus.module_prefixed_checkpoint(root / "micro.pth")
        return ["backbones", "register", "claimed-tiny", "--checkpoint", root / "micro.pth", "--arch", "vit-tiny"]
    if name == "module_prefix":
        make_corpus.module_prefixed_checkpoint(root / "ddp.pth", seed=2)
        return ["backbones", "register", "from-ddp", "--checkpoint", root / "ddp.pth"]
    if name == "unknown_backbone":
        return ["run", "--task", "finetune", "--backbone", "scratch-vit-mikro"]
    if name == "unknown_key":
        return ["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--config", CORPUS / "unknown_key.yaml"]
    if name == "negative_lr":
        return ["pretrain", "--method", "mae", "--arch", "vit-micro", "--config", CORPUS / "negative_lr.yaml"]
    if name.startswith("mask_ratio="):
        return ["pretrain", "--method", "mae", "--arch", "vit-micro", "--mask-ratio", name.split("=")[1]]
    if name == "results_not_sqlite":
        (root / "results.sqlite").write_text("not a database\n")
        return ["run", "--task", "knn", "--backbone", "scratch-vit-micro", "--data", shapes / "classification",
                "--set", "img_size=16", "--set", "num_workers=0", "--results", root / "results.sqlite"]
    if name == "out_under_a_file":
        (root / "a-file").write_text("")
        return ["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--data", shapes / "classification",
                "--batch-size", "8", "--set", "img_size=16", *FAST, "--out", root / "a-file" / "run"]
    if name.startswith("quirk_"):                       # the quirk file's own objects, scored against it
        path = CORPUS / "coco" / f"{name}.json"
        (root / "gt.json").write_text(json.dumps(make_corpus.ground_truth_as_predictions(json.loads(path.read_text()))))
        return ["run", "--task", "coco", "--val-json", path, "--images", CORPUS / "coco" / "images",
                "--eval-predictions", root / "gt.json"]
    if name == "all_quirks_train":
        path = CORPUS / "coco" / "quirk_all.json"
        return ["run", "--task", "coco", "--backbone", "scratch-vit-micro", "--train-json", path, "--val-json", path,
                "--images", CORPUS / "coco" / "images", "--batch-size", "2", *FAST]
    if name in ("set_wrong_type", "set_out_of_range", "run_dir_in_use"):
        value = {"set_wrong_type": "lr=abc", "set_out_of_range": "drop_path=2.5"}.get(name, "img_size=16")
        args = ["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--data", shapes / "classification",
                "--batch-size", "8", *FAST, "--set", value, "--out", root / "run"]
        if name == "run_dir_in_use":
            from maebench.runlock import RunLock
            (root / "run").mkdir()
            LOCKS[name] = RunLock(root / "run")
            LOCKS[name].acquire()
        return args
    if name == "typo_key":
        return ["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--config", CORPUS / "typo_key.yaml"]
    if name == "format_contradicts_file":
        return ["backbones", "register", "as-mae", "--checkpoint", make_corpus.timm_with_head_checkpoint(root / "t.pth"),
                "--format", "mae"]
    if name == "pickled_checkpoint":
        return ["backbones", "register", "pickled", "--checkpoint", make_corpus.pickled_checkpoint(root / "p.pth")]
    raise KeyError(name)


CASES = ["truncated_png", "label_above_classes", "label_wrong_size", "corrupt_jpeg",   # in test order
         *(f"coco_{n}" for n in COCO_NAMES), "coco_degenerate", "truncated_checkpoint", "other_architecture",
         "other_architecture_as_vit_tiny", "micro_as_vit_tiny", "module_prefix", "unknown_backbone", "unknown_key",
         "typo_key", "set_wrong_type", "set_out_of_range", "negative_lr",
         *(f"mask_ratio={r}" for r in ("0", "1", "1.5", "-0.25")), "results_not_sqlite", "out_under_a_file",
         "run_dir_in_use", "format_contradicts_file", "pickled_checkpoint", *(f"quirk_{q}" for q in QUIRKS),
         "all_quirks_train"]


class Case:
    def __init__(self, name: str, root: Path, home: Path, result: subprocess.CompletedProcess, registry: bytes):
        self.name, self.root, self.home, self.result, self.registry_before = name, root, home, result, registry

    def rows(self):
        return ResultsStore(self.home / "results.sqlite").rows(status=None)

    def registry_unchanged(self) -> bool:
        return (self.home / "registry.json").read_bytes() == self.registry_before

    def refused(self, code: int, *named: str) -> str:
        """Exit `code`, one stderr line naming each of `named`, no row, the registry untouched."""
        r = self.result
        assert r.returncode == code, r.stderr[-3000:]
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("maebench: error: "), r.stderr[-3000:]
        for text in named:
            assert text in lines[0], lines[0]
        assert self.rows() == []
        assert self.registry_unchanged()
        return lines[0]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """name -> Case; asking for a case also starts the next one, so two commands run at a time."""
    base = tmp_path_factory.mktemp("badinput")
    shapes = base / "shapes"
    r = maebench(["data", "prepare", "shapes", "--out", shapes, "--only", "classification", "--only", "ade20k",
                  "--classes", "3", "--img-size", "16", "--train-per-class", "8", "--val-per-class", "3",
                  "--ade-img-size", "32", "--ade-train-images", "4", "--ade-val-images", "3"], base / "home0", base)
    assert r.returncode == 0, r.stderr
    template = base / "registered"
    make_corpus.module_prefixed_checkpoint(base / "existing.pth", seed=1)
    r = maebench(["backbones", "register", "existing", "--checkpoint", base / "existing.pth"], template, base)
    assert r.returncode == 0, r.stderr
    registry = (template / "registry.json").read_bytes()

    pool, futures = ThreadPoolExecutor(max_workers=2), {}

    def submit(name: str) -> None:
        if name not in futures:
            root = base / name.replace("=", "_")
            root.mkdir()
            home = root / "home"
            shutil.copytree(template, home)
            args = case_args(name, root, shapes)          # set-up in this thread, the command in the pool
            futures[name] = pool.submit(lambda: Case(name, root, home, maebench(args, home, root), registry))

    def get(name: str) -> Case:
        submit(name)
        later = CASES[CASES.index(name) + 1:]
        if later:
            submit(later[0])                              # the next test's command runs meanwhile
        return futures[name].result()

    yield get
    pool.shutdown(cancel_futures=True)
    for lock in LOCKS.values():
        lock.release()


# ---- images and label maps ----------------------------------------------------------------------
def test_truncated_png_label_map(cases):
    c = cases("truncated_png")
    c.refused(1, f"cannot read label map {c.root / 'ade' / ADE_TRAIN}")


def test_ade_label_above_the_class_count(cases):
    c = cases("label_above_classes")
    c.refused(1, str(c.root / "ade" / ADE_VAL), "label value 40 is out of range for 8 classes")


def test_label_map_of_the_wrong_size(cases):
    c = cases("label_wrong_size")
    c.refused(1, f"label map {c.root / 'ade' / ADE_VAL} is 16x8 but its image", "is 32x32")


def test_corrupt_jpeg_in_an_image_folder_fails_the_started_run_with_one_line(cases):
    c = cases("corrupt_jpeg")
    r = c.result
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.replace("\r", "\n").split("\n") if "maebench: error:" in line]
    bad = c.root / "cls" / "train" / "circle" / "corrupt.jpg"
    assert len(errors) == 1 and errors[0].startswith(f"maebench: error: cannot read image {bad}"), errors
    (row,) = c.rows()
    assert row.status == "failed" and str(bad) in row.error and row.metrics == {}
    assert c.registry_unchanged()


# ---- COCO annotation files ------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("missing_images", "missing 'images' list"),
    ("missing_categories", "missing 'categories' list"),
    ("unlisted_image", "annotation id 2 refers to image id 99, which is not listed in 'images'"),
    ("undeclared_category", "annotation id 2 has category id 12, which is not declared in 'categories'"),
    ("image_twice", "image id 1 is listed twice"),
])
def test_coco_annotation_file(name, message, cases):
    cases(f"coco_{name}").refused(1, f"{CORPUS / 'coco' / name}.json: {message}")


def test_coco_zero_width_box_is_a_counted_skip(cases):
    """Both degenerate annotations live in one file (one training run serves this test and the
    next): the warning names the file and counts each kind; the run trains on the rest."""
    c = cases("coco_degenerate")
    r = c.result
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{CORPUS / 'coco' / 'degenerate.json'}: skipped 2 degenerate annotations for training" in r.stderr
    assert "(1 zero-size boxes" in r.stderr
    assert "'degenerate_box': 1" in r.stdout                        # the log line of what training skipped
    (row,) = c.rows()
    assert row.status == "done" and row.metrics["bbox/AP"] is not None
    assert c.registry_unchanged()


def test_coco_two_point_polygon_is_a_counted_skip(cases):
    r = cases("coco_degenerate").result
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "1 polygons with < 3 points" in r.stderr and "'degenerate_polygon': 1" in r.stdout


# ---- checkpoints ------------------------------------------------------------------------------------
def test_truncated_checkpoint(cases):
    path = CORPUS / "truncated_checkpoint.pth"
    cases("truncated_checkpoint").refused(1, f"{path}: cannot read checkpoint, truncated or corrupt")


def test_checkpoint_of_another_architecture(cases):
    path = CORPUS / "other_architecture.pth"
    cases("other_architecture").refused(2, f"{path}: cannot tell the architecture (no ViT patch embedding",
                                        "pass --arch")
    cases("other_architecture_as_vit_tiny").refused(1, f"{path}: does not fit vit-tiny", "unexpected keys conv1.weight")


def test_vit_of_another_size_than_claimed(cases):
    c = cases("micro_as_vit_tiny")
    c.refused(1, f"{c.root / 'micro.pth'}: does not fit vit-tiny", "look like vit-micro")


def test_state_dict_with_module_prefixes_registers_with_the_prefix_stripped(cases, monkeypatch):
    import torch

    from maebench.backbones import registry
    c = cases("module_prefix")
    assert c.result.returncode == 0, c.result.stderr
    assert c.result.stderr.strip() == "" and "registered from-ddp: vit-micro, patch 4, 32 px" in c.result.stdout
    monkeypatch.setenv("MAEBENCH_HOME", str(c.home))
    loaded = registry.load("from-ddp")[0].state_dict()
    state = make_corpus.module_prefixed_checkpoint(c.root / "again.pth", seed=2)
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    assert c.rows() == []


# ---- names, config keys and values --------------------------------------------------------------------
def test_unknown_backbone(cases):
    cases("unknown_backbone").refused(2, "unknown backbone 'scratch-vit-mikro' (did you mean: scratch-vit-micro")


def test_unknown_config_key_in_a_yaml_file(cases):
    cases("unknown_key").refused(2, f"unknown config key 'learning_rate' in {CORPUS / 'unknown_key.yaml'} "
                                    "(did you mean: base_lr, lr?)")


def test_config_file_typo_gets_did_you_mean(cases):
    cases("typo_key").refused(2, f"unknown config key 'layer_dcay' in {CORPUS / 'typo_key.yaml'} "
                                 "(did you mean: layer_decay")


def test_wrong_typed_set_value(cases):
    cases("set_wrong_type").refused(2, "config key 'lr' in --set lr=abc expects a number > 0 (or null), got 'abc'")


def test_out_of_range_set_value(cases):
    cases("set_out_of_range").refused(2, "config key 'drop_path' in --set drop_path=2.5 expects a number in [0, 1), "
                                         "got 2.5")


def test_negative_learning_rate(cases):
    cases("negative_lr").refused(2, f"config key 'base_lr' in {CORPUS / 'negative_lr.yaml'} expects a number > 0, "
                                    "got -0.001")


@pytest.mark.parametrize("ratio", ["0", "1", "1.5", "-0.25"])
def test_mask_ratio_outside_0_1(ratio, cases):
    cases(f"mask_ratio={ratio}").refused(2, "config key 'mask_ratio' in --mask-ratio expects a number in (0, 1), "
                                         f"got {float(ratio)}")


# ---- where results and runs go ---------------------------------------------------------------------
def test_results_store_that_is_not_sqlite(cases):
    c = cases("results_not_sqlite")
    c.refused(1, f"cannot use results store {c.root / 'results.sqlite'}: file is not a database")
    assert (c.root / "results.sqlite").read_text() == "not a database\n"


def test_run_directory_under_a_file(cases):
    c = cases("out_under_a_file")
    c.refused(1, f"cannot create run directory {c.root / 'a-file' / 'run'}: Not a directory")


def test_run_directory_another_process_trains_in(cases):
    c = cases("run_dir_in_use")
    c.refused(1, f"run directory {c.root / 'run'} is in use: pid {os.getpid()} on {socket.gethostname()} (started ")


# ---- checkpoints the command line must not misread ------------------------------------------------------
def test_format_that_contradicts_the_file(cases):
    c = cases("format_contradicts_file")
    c.refused(2, f"{c.root / 't.pth'}: --format mae contradicts the file, which reads as timm", "drop --format")


def test_checkpoint_that_needs_full_unpickling_names_the_flag(cases):
    c = cases("pickled_checkpoint")
    line = c.refused(1, f"{c.root / 'p.pth'}: refused: reading it needs full unpickling")
    assert line.endswith("if you trust its source, pass --trust-checkpoint.")


# ---- COCO files as annotation tools export them: normalised, scored like the clean file -------------------
@pytest.mark.parametrize("quirk", QUIRKS)
def test_coco_export_quirk_scores_its_own_ground_truth_at_ap_100(quirk, cases):
    c = cases(f"quirk_{quirk}")
    r = c.result
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(line.startswith("maebench: note: ") for line in r.stderr.splitlines() if line.strip()), r.stderr
    (row,) = c.rows()
    assert row.metrics["bbox/AP"] == pytest.approx(100.0) and row.metrics["segm/AP"] == pytest.approx(100.0)
    assert c.registry_unchanged()


def test_coco_export_quirks_all_at_once_train_and_evaluate(cases):
    c = cases("all_quirks_train")
    r = c.result
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"maebench: note: {CORPUS / 'coco' / 'quirk_all.json'}: normalised: 2 annotation ids renumbered" in r.stderr
    (row,) = c.rows()
    assert row.status == "done" and row.metrics["bbox/AP"] is not None
