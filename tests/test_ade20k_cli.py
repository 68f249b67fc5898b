"""`maebench run --task ade20k` end to end on the embedded set (tiny), label conventions, and bad
input refused with one line and no result row."""
import numpy as np
import pytest
import torch
from PIL import Image

from maebench.backbones import registry
from maebench.backbones.vit import create_vit
from maebench import cli
from maebench.results import ResultsStore
from maebench.tasks.ade20k import label_flags, open_data
from maebench.tasks.ade20k.transforms import SegTrainTransform

TINY = ["--set", "img_size=32", "--set", "crop_size=32", "--set", "channels=16", "--set", "aux_channels=8"]




@pytest.fixture
def micro(tmp_path):
    """A registered random vit-micro (patch 4): what a user's own small checkpoint looks like."""
    torch.manual_seed(0)
    path = tmp_path / "micro.pth"
    torch.save({"model": create_vit("vit-micro", img_size=64).state_dict()}, path)
    registry.register("micro", path, arch="vit-micro", img_size=64, family="mae-norm-pixel")
    return "micro"


def write_set(root, *, labels, size=(8, 8), bad=None):
    """An ADE-layout set with one pair per split; `bad` = (split, label array) replaces one label."""
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        Image.new("RGB", size, (90, 120, 200)).save(root / "images" / split / "a.jpg")
        lab = bad[1] if bad and bad[0] == split else labels
        Image.fromarray(lab.astype(np.uint8)).save(root / "annotations" / split / "a.png")
    return root


def test_cli_run_on_the_embedded_set_stores_segmentation_metrics(micro, capsys):
    rc = cli.main(["run", "--task", "ade20k", "--backbone", micro, "--epochs", "1", "--batch-size", "16", *TINY])
    assert rc == 0, capsys.readouterr().err
    (row,) = ResultsStore().rows(task="ade20k")
    assert row.status == "done" and row.dataset == "shapes" and row.backbone == "micro"
    m = row.metrics
    assert set(m) >= {"mIoU", "mAcc", "aAcc", "per_class_iou"}
    assert len(m["per_class_iou"]) == 8 == row.config["num_classes"]       # from the set's meta.json
    assert all(v is None or 0 <= v <= 100 for v in m["per_class_iou"])
    assert 0 <= m["mIoU"] <= 100 and 0 < m["aAcc"] <= 100
    assert row.config["reduce_zero_label"] is True and row.config["rel_pos_bias"] is True
    assert "mIoU" in capsys.readouterr().out


def test_reduce_zero_label_flags_reach_the_training_labels(tmp_path):
    raw = np.array([[0, 1], [2, 255]])
    root = write_set(tmp_path / "set", labels=raw, size=(2, 2))

    class Args:
        epochs = batch_size = None
        num_classes, ignore_index, reduce_zero_label, deterministic = 3, None, None, False

    from maebench import config
    from maebench.tasks.ade20k import check_config

    class Entry:
        mean, std = (0.5,) * 3, (0.25,) * 3

    def labels(**flags):
        for k, v in flags.items():
            setattr(Args, k, v)
        cfg = check_config(config.load("ade20k", flags=label_flags(vars(Args), root)), patch_size=2)
        cfg.update(img_size=2, crop_size=2, photometric=False, flip=0.0, ratio_range=[1.0, 1.0])
        train, val = open_data(root, cfg, Entry)
        train.transforms = SegTrainTransform(img_size=2, crop_size=2, mean=Entry.mean, std=Entry.std,
                                             ratio_range=(1, 1), cat_max_ratio=1.0, flip=0.0, photometric=False,
                                             ignore_index=cfg["ignore_index"])
        return train[0][1].tolist(), val[0][1].tolist()

    assert labels() == ([[255, 0], [1, 255]],) * 2                    # ADE20K default: 0 -> ignore, v -> v - 1
    assert labels(reduce_zero_label=False) == ([[0, 1], [2, 255]],) * 2


@pytest.mark.parametrize("bad, message", [
    (("validation", np.zeros((4, 8))), "is 8x4 but its image"),
    (("training", np.full((8, 8), 9)), "label value 9 is out of range for 3 classes"),
])
def test_bad_labels_are_one_line_errors_naming_the_file_and_leave_no_row(tmp_path, micro, capsys, bad, message):
    root = write_set(tmp_path / "set", labels=np.ones((8, 8)), bad=bad)
    rc = cli.main(["run", "--task", "ade20k", "--backbone", micro, "--data", str(root), "--num-classes", "3", *TINY])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and str(root / "annotations" / bad[0] / "a.png") in err
    assert len(err.strip().splitlines()) == 1
    assert ResultsStore().rows(task="ade20k", status=None) == []


@pytest.mark.parametrize("args, message", [
    (["--set", "eval_mode=sliding"], "unknown inference mode (eval_mode) 'sliding' (did you mean: slide"),
    (["--set", "crop_size=30"], "multiple of the patch size 4"),
    (["--ignore-index", "2"], "ignore_index 2 is one of the 8 class ids"),
])
def test_bad_options_exit_2_before_any_row(micro, capsys, args, message):
    assert cli.main(["run", "--task", "ade20k", "--backbone", micro, *args]) == 2
    assert message in capsys.readouterr().err
    assert ResultsStore().rows(task="ade20k", status=None) == []
