"""End to end: `maebench pretrain --method supervised|mocov3` on a small generated shapes set
trains through engine.fit, stores its results row, and registers a loadable backbone."""
import pytest
import torch

from maebench.cli import main
from maebench.results import ResultsStore




# CPU scale: 4 classes x 12 training images at 32 px, batch 16 -> 3 optimizer steps per epoch.
# A high lr without warm-up, so that a few steps visibly move the loss.
COMMON = ["--arch", "vit-micro", "--img-size", "32", "--batch-size", "16",
          "--set", "num_workers=0", "--set", "warmup_epochs=0", "--set", "log_every=1"]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    from maebench.data import shapes
    root = tmp_path_factory.mktemp("data")
    opts = shapes.ShapesOptions(classes=4, train_per_class=12, val_per_class=3)
    return shapes.prepare(root, opts, kinds=("classification",))["classification"]


def _history(row):
    from maebench.torch_io import load
    return load(f"{row.out_dir}/checkpoint.pth")["history"]


def _check_registered(name, family, row, arch="vit-micro"):
    from maebench.backbones import registry
    from maebench.torch_io import load
    e = registry.entry(name)
    assert (e.family, e.arch, e.patch_size, e.img_size) == (family, arch, 4, 32)
    model, _ = registry.load(name)
    saved = load(f"{row.out_dir}/encoder.pth")
    assert saved["maebench"]["family"] == family
    state = model.state_dict()
    for k, v in saved["model"].items():           # the registered weights are the trained ones
        assert torch.equal(state[k], v), k
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 96)


def test_tiny_supervised_run_reduces_its_loss_and_registers(shapes_dir, capsys):
    rc = main(["pretrain", "--method", "supervised", "--data", str(shapes_dir), "--epochs", "4",
               "--name", "sup-tiny", *COMMON, "--set", "lr=2e-3", "--set", "aug.mixup=0.8", "--set", "aug.cutmix=1.0"])
    assert rc == 0
    [row] = ResultsStore().rows(task="pretrain-supervised")
    assert row.backbone == "sup-tiny" and row.status == "done"
    assert set(row.metrics) == {"loss", "top1"} and 0 <= row.metrics["top1"] <= 100
    hist = _history(row)
    assert len(hist) == 4 and row.metrics["loss"] == pytest.approx(hist[-1]["loss"])
    assert hist[-1]["loss"] < hist[0]["loss"], hist
    assert row.config["aug"]["mixup"] == 0.8 and row.config["drop_path"] == 0.1   # the recipe ran, mixup included
    assert row.config["aug"]["crop_min"] == 0.5                # the vit-micro entry's mild crops
    _check_registered("sup-tiny", "supervised", row)
    assert "registered backbone 'sup-tiny'" in capsys.readouterr().out


def test_tiny_mocov3_run_reduces_its_loss_and_registers(shapes_dir):
    rc = main(["pretrain", "--method", "mocov3", "--data", str(shapes_dir), "--epochs", "3",
               "--name", "moco-tiny", *COMMON, "--set", "lr=3e-3",
               "--set", "moco.mlp_dim=64", "--set", "moco.dim=32"])
    assert rc == 0
    [row] = ResultsStore().rows(task="pretrain-mocov3")
    assert row.backbone == "moco-tiny" and set(row.metrics) == {"loss"}
    hist = _history(row)
    assert len(hist) == 3 and hist[-1]["loss"] < hist[0]["loss"], hist
    _check_registered("moco-tiny", "contrastive", row)


def test_bad_input_fails_before_any_row(shapes_dir):
    # odd per-process batch with mixup, an invalid name, a missing directory: no training, no row
    assert main(["pretrain", "--method", "supervised", "--data", str(shapes_dir), "--epochs", "1",
                 "--arch", "vit-micro", "--batch-size", "15", "--set", "aug.mixup=0.8"]) == 2
    assert main(["pretrain", "--method", "mocov3", "--data", str(shapes_dir), "--epochs", "1",
                 "--arch", "vit-micro", "--name", "Bad Name"]) == 2
    assert main(["pretrain", "--method", "mocov3", "--data", str(shapes_dir / "nope"), "--epochs", "1",
                 "--arch", "vit-micro"]) == 1
    assert main(["pretrain", "--method", "mocov3", "--epochs", "1.5", "--arch", "vit-micro"]) == 2
    assert ResultsStore().rows(status=None) == []
