"""Shared test setup.

- Every test gets its own MAEBENCH_HOME, so nothing touches ~/.maebench.
- One torch thread, in this process and in the subprocesses tests start: the tiny models here
  gain nothing from a second thread, and OpenMP spin-waiting on a busy 2-core machine made
  them 5-190x slower (benchmarks/REPORT.md, threads section).
"""
import os

import pytest

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "maebench-home"
    monkeypatch.setenv("MAEBENCH_HOME", str(home))
    monkeypatch.delenv("MAEBENCH_RESULTS", raising=False)
    yield home


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def micro_checkpoint(tmp_path_factory):
    """A random vit-micro (4 blocks, 96-d, patch 4) at 16 px, saved once per module."""
    import torch
    from maebench.backbones.vit import create_vit
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "micro.pth"
    torch.save(create_vit("vit-micro", img_size=16, patch_size=4).state_dict(), path)
    return path


@pytest.fixture
def micro(micro_checkpoint):
    """That vit-micro registered as 'micro' in this test's home."""
    from maebench.backbones import registry
    registry.register("micro", micro_checkpoint, arch="vit-micro", fmt="timm", img_size=16, patch_size=4)
    return "micro"


@pytest.fixture(scope="module")
def dense_sets(tmp_path_factory):
    """The generated COCO (64 px, 8 train / 4 val) and ADE20K (32 px, 8 training / 4 validation) sets."""
    from maebench.data import shapes
    return shapes.prepare(tmp_path_factory.mktemp("dense"),
                          shapes.ShapesOptions(coco_img_size=64, coco_train_images=8, coco_val_images=4,
                                               ade_img_size=32, ade_train_images=8, ade_val_images=4),
                          kinds=("coco", "ade20k"))


@pytest.fixture
def micro32(tmp_path):
    """A random vit-micro (patch 4) at 32 px, registered as 'micro32' in this test's home."""
    import torch
    from maebench.backbones import registry
    from maebench.backbones.vit import create_vit
    torch.manual_seed(0)
    path = tmp_path / "micro32.pth"
    torch.save(create_vit("vit-micro", img_size=32, patch_size=4).state_dict(), path)
    registry.register("micro32", path, arch="vit-micro", fmt="timm", img_size=32, patch_size=4)
    return "micro32"


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """A generated ImageFolder set: 4 classes x (10 train, 3 val) images of 16 px, once per module."""
    from maebench.data.shapes import ShapesOptions, prepare
    root = tmp_path_factory.mktemp("data")
    return prepare(root, ShapesOptions(img_size=16, classes=4, train_per_class=10, val_per_class=3),
                   kinds=("classification",))["classification"]
