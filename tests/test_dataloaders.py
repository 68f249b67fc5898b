"""The thread count a run uses depends on the machine and the environment, never on its load."""
import os

import torch

from maebench import dataloaders


def _chosen(monkeypatch, load: float) -> int:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(dataloaders, "_CHOSEN", None)           # chosen once per process: choose again
    return dataloaders.choose_threads(log=lambda s: None)


def test_threads_ignore_the_machine_load(monkeypatch):
    for key in ("MAEBENCH_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    idle = _chosen(monkeypatch, 0.0)
    assert _chosen(monkeypatch, 1000.0) == idle == max(1, dataloaders.physical_cores())
    assert torch.get_num_threads() == idle


def test_threads_are_the_cores_shared_by_the_local_processes_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("MAEBENCH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(dataloaders, "physical_cores", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert _chosen(monkeypatch, 50.0) == 2
    monkeypatch.setenv("MAEBENCH_THREADS", "3")
    assert _chosen(monkeypatch, 50.0) == 3
