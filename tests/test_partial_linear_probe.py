"""Partial fine-tuning with K = 0 tuned blocks is the paper's linear probe (Fig. 9: 73.5 for
ViT-L, Table 1's linear-probe number): `--blocks 0` runs the linprobe protocol (BatchNorm +
linear head on the frozen [cls], LARS) through its own run path and stores a partial row with
blocks 0 carrying that run's metrics; K > 0 still fine-tunes the last blocks."""
import pytest
import torch

from maebench.cli import main
from maebench.results import ResultsStore

FAST = ["--set", "num_workers=0", "--set", "eval_batch_size=16", "--set", "warmup_epochs=0",
        "--set", "micro_batch=8",        # linprobe's vit-micro recipe caps it at its batch of 64; the batch here is 8
        "--set", "aug.mixup=0.0"]        # a partial-only key: not passed to the probe


@pytest.fixture
def setup(tmp_path):
    from maebench.backbones import registry
    from maebench.backbones.vit import create_vit
    from maebench.data.shapes import ShapesOptions, prepare
    data = prepare(tmp_path / "data", ShapesOptions(img_size=16, classes=4, train_per_class=8, val_per_class=2),
                   kinds=("classification",))["classification"]
    torch.manual_seed(0)
    torch.save(create_vit("vit-micro", img_size=16, patch_size=4).state_dict(), tmp_path / "micro.pth")
    registry.register("micro", tmp_path / "micro.pth", arch="vit-micro", fmt="timm", img_size=16, patch_size=4)
    return str(data)


def test_partial_k0_runs_the_linear_probe_protocol_and_stores_a_partial_row(setup, tmp_path):
    assert main(["run", "--task", "partial", "--backbone", "micro", "--data", setup, "--blocks", "0,1",
                 "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "out"), *FAST]) == 0
    store = ResultsStore()
    (probe,) = store.rows(task="linprobe")
    assert probe.config["optimizer"] == "lars" and "blocks" not in probe.config
    by_k = {r.config["blocks"]: r for r in store.rows(task="partial")}
    assert sorted(by_k) == [0, 1]
    k0 = by_k[0]
    assert k0.config["protocol"] == "linprobe" and k0.config["linprobe_run_id"] == probe.run_id
    assert k0.metrics["top1"] == probe.metrics["top1"] and k0.config["optimizer"] == "lars"
    assert k0.config["backbone_arch"] == "vit-micro"
    assert by_k[1].config["optimizer"] == "adamw"                   # K = 1: the fine-tuning recipe
