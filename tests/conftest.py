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
def small_set(tmp_path_factory):
    """A generated ImageFolder set: 4 classes x (10 train, 3 val) images of 16 px, once per module."""
    from maebench.data.shapes import ShapesOptions, prepare
    root = tmp_path_factory.mktemp("data")
    return prepare(root, ShapesOptions(img_size=16, classes=4, train_per_class=10, val_per_class=3),
                   kinds=("classification",))["classification"]
