"""Shared test setup: every test gets its own MAEBENCH_HOME, so nothing touches ~/.maebench."""
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "maebench-home"
    monkeypatch.setenv("MAEBENCH_HOME", str(home))
    monkeypatch.delenv("MAEBENCH_RESULTS", raising=False)
    yield home
