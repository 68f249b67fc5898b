"""Training side of the coco task at CPU scale: the augmentation keeps boxes, masks and labels
aligned, a tiny Mask R-CNN overfits two images through engine.fit, and `maebench run --task
coco` stores a row (and re-scores its own results file to the same numbers, without torch)."""
import json
import subprocess
import sys

import pytest
import torch

from maebench.cli import main
from maebench.results import ResultsStore

FAST = ["--set", "img_size=64", "--set", "num_workers=0", "--set", "warmup_epochs=0", "--set", "eval_batch_size=4"]




@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    """The generated COCO set at 64 px: 8 train, 4 val images (non-contiguous ids, crowds)."""
    from maebench.data import shapes
    out = tmp_path_factory.mktemp("shapes")
    shapes.prepare(out, shapes.ShapesOptions(coco_img_size=64, coco_train_images=8, coco_val_images=4), kinds=("coco",))
    return out / "coco"


@pytest.fixture(scope="module")
def micro_checkpoint(tmp_path_factory):
    from maebench.backbones.vit import create_vit
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "micro.pth"
    torch.save(create_vit("vit-micro", img_size=32, patch_size=4).state_dict(), path)
    return path


@pytest.fixture
def micro(micro_checkpoint):
    from maebench.backbones import registry
    registry.register("micro", micro_checkpoint, arch="vit-micro", fmt="timm", img_size=32, patch_size=4)
    return "micro"


def dataset(coco_set, split="train", transforms=None):
    from maebench.data.coco import CocoInstances
    from maebench.data.layout import resolve_coco
    p = resolve_coco(coco_set)
    return CocoInstances(p[f"{split}_images"], p[f"{split}_json"], train=split == "train", transforms=transforms)


# ---- augmentation ------------------------------------------------------------------------------
def test_large_scale_jitter_keeps_targets_aligned(coco_set):
    from maebench.tasks.coco.data import LargeScaleJitter, boxes_from_masks

    ds = dataset(coco_set)
    lsj = LargeScaleJitter(96, scale_range=(0.3, 2.0), flip_prob=0.5, fill=(0.4, 0.5, 0.6))
    torch.manual_seed(0)
    for i in range(len(ds)):
        for _ in range(2):
            img, t = lsj(*ds[i])
            n = len(t["boxes"])
            assert img.shape == (3, 96, 96) and t["masks"].shape == (n, 96, 96) and len(t["labels"]) == n
            boxes, nonempty = boxes_from_masks(t["masks"])
            assert nonempty.all() and torch.equal(t["boxes"], boxes)
            assert (t["boxes"][:, 2:] > t["boxes"][:, :2]).all()          # Mask R-CNN needs positive sizes
            assert torch.equal(t["area"], t["masks"].flatten(1).sum(1).float())


def test_flip_and_identity_scale_are_exact(coco_set):
    """Scale 1 on a 64 px image into a 64 px square, flip always: the mirror image of the input."""
    from maebench.tasks.coco.data import LargeScaleJitter, to_float

    ds = dataset(coco_set)
    i = next(i for i in range(len(ds)) if len(ds[i][1]["boxes"]))
    image, target = ds[i]
    img, t = LargeScaleJitter(64, scale_range=(1.0, 1.0), flip_prob=1.0)(image, target)
    torch.testing.assert_close(img, to_float(image).flip(-1))
    assert torch.equal(t["masks"], target["masks"].flip(-1))
    assert torch.equal(t["labels"], target["labels"])
    x1 = 64 - t["boxes"][:, 2]
    # boxes are recomputed from the pixel masks: within a pixel of the annotated boxes
    assert torch.allclose(x1, target["boxes"][:, 0], atol=1.0)


# ---- training ----------------------------------------------------------------------------------
def tiny_cfg(**over):
    from maebench import config
    from maebench.tasks.coco import check_config
    cfg = check_config(config.load("coco", arch="vit-micro", sets=["img_size=64"]))
    cfg.update(epochs=30, batch_size=2, lr=1e-3, warmup_epochs=0, schedule="cosine", num_workers=0,
               checkpoint_every=1000, log_every=1000, layer_decay=1.0, **over)
    return cfg


def test_tiny_model_overfits_two_images(coco_set, tmp_path):
    """Two images, no augmentation, 30 steps through engine.fit: the loss falls by more than half."""
    from maebench.backbones.vit import create_vit
    from maebench import engine
    from maebench.tasks.coco import loss_fn
    from maebench.tasks.coco.data import collate, eval_transform
    from maebench.tasks.coco.model import build_mask_rcnn

    ds = dataset(coco_set, transforms=eval_transform)
    keep = [i for i in range(len(ds)) if len(ds[i][1]["boxes"])][:2]
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_mask_rcnn(create_vit("vit-micro", img_size=64, patch_size=4), num_classes=ds.num_classes,
                            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), cfg=cfg)
    result = engine.fit(model, torch.utils.data.Subset(ds, keep), loss_fn, cfg, out_dir=tmp_path,
                        device=torch.device("cpu"), collate_fn=collate, log=lambda *_: None)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 30
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0], losses
    assert result.history[-1]["mask"] < result.history[0]["mask"]


# ---- the command -------------------------------------------------------------------------------
def rows(**kw):
    return ResultsStore().rows(status=None, **kw)


def test_cli_run_stores_a_row_and_its_results_rescore_identically(micro, coco_set, capsys):
    assert main(["run", "--task", "coco", "--backbone", micro, "--data", str(coco_set), "--epochs", "1",
                 "--batch-size", "4", "--neck", "simple-pyramid", *FAST]) == 0
    (row,) = rows(task="coco")
    assert row.status == "done" and row.backbone == "micro" and row.dataset == "shapes"  # meta.json names the generated set: never taken for COCO 2017
    assert row.config["neck"] == "simple-pyramid" and row.config["img_size"] == 64
    for t in ("bbox", "segm"):
        for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            v = row.metrics[f"{t}/{name}"]
            assert v is None or 0.0 <= v <= 100.0
        assert isinstance(row.metrics[f"{t}/AP"], float)
    from pathlib import Path
    results = Path(row.out_dir) / "coco_results.json"
    assert isinstance(json.loads(results.read_text()), list)
    assert "bbox AP" in capsys.readouterr().out

    assert main(["run", "--task", "coco", "--data", str(coco_set), "--eval-predictions", str(results),
                 "--backbone", "micro-rescored"]) == 0
    (again,) = rows(backbone="micro-rescored")
    assert again.metrics == pytest.approx(row.metrics)


def test_eval_predictions_scores_ground_truth_100_without_torch(coco_set, tmp_path, monkeypatch):
    """The re-scoring path stores a row and never imports torch (checked in a fresh interpreter)."""
    from maebench.data.layout import resolve_coco
    from coco_helpers import ground_truth_as_results
    from maebench.tasks.coco.evaluate import load_ground_truth

    gt_file = tmp_path / "gt_as_predictions.json"
    gt_file.write_text(json.dumps(ground_truth_as_results(load_ground_truth(resolve_coco(coco_set)["val_json"]))))
    code = ("import sys; from maebench.cli import main; "
            f"rc = main(['run', '--task', 'coco', '--data', {str(coco_set)!r}, '--eval-predictions', {str(gt_file)!r}]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (row,) = rows(task="coco")
    assert row.backbone == "gt_as_predictions" and row.split == "val"
    assert row.metrics["bbox/AP"] == pytest.approx(100.0) and row.metrics["segm/AP"] == pytest.approx(100.0)


@pytest.mark.parametrize("setup, args, code, message", [
    (None, ["--epochs", "1"], 2, "--task coco needs --backbone NAME"),
    ("bad_json", ["--backbone", "micro"], 1, "malformed JSON at line 1"),
    ("bad_preds", [], 1, "which the ground truth does not declare"),
    (None, ["--backbone", "micro", "--neck", "vit-fpn", "--set", "aug.mode=mosaic"], 2, "unknown augmentation mode"),
    (None, ["--backbone", "micro", "--set", "model.anchor_sizes=[8,16]"], 2, "needs 5 positive sizes"),
])
def test_bad_input_is_one_line_and_leaves_no_row(micro, coco_set, tmp_path, capsys, setup, args, code, message):
    from maebench.data.layout import resolve_coco
    paths = resolve_coco(coco_set)
    data = ["--data", str(coco_set)]
    if setup == "bad_json":
        bad = tmp_path / "val.json"
        bad.write_text('{"images": [')
        data = ["--train-json", str(bad), "--val-json", paths["val_json"], "--images", paths["val_images"]]
    if setup == "bad_preds":
        preds = tmp_path / "preds.json"
        preds.write_text(json.dumps([{"image_id": json.loads(open(paths["val_json"]).read())["images"][0]["id"],
                                      "category_id": 4, "bbox": [0, 0, 5, 5], "score": 0.5}]))
        args = ["--eval-predictions", str(preds)]
    assert main(["run", "--task", "coco", *data, *args, *FAST]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert rows() == []


def test_unreadable_image_in_a_worker_is_a_one_line_error(micro, coco_set, tmp_path, capsys):
    """A corrupt JPEG met by a DataLoader worker mid-training: one line naming the file and the
    image id (torch would fold the worker's traceback into the message), and a failed row."""
    import shutil
    data = tmp_path / "coco"
    shutil.copytree(coco_set, data)
    victim = sorted((data / "train").iterdir())[3]
    victim.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    assert main(["run", "--task", "coco", "--backbone", micro, "--data", str(data), "--epochs", "1",
                 "--batch-size", "4", *FAST, "--set", "num_workers=2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot read image {victim}" in err and "image id" in err, err
    (row,) = rows(task="coco")
    assert row.status == "failed"
