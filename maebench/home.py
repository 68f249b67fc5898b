"""Where maebench keeps its state.

MAEBENCH_HOME (default ~/.maebench) holds:
    registry.json     the user's registered backbones
    weights/          checkpoint files of named backbones
    data/             datasets written by `maebench data prepare`
    runs/<run_id>/    checkpoints, logs and predictions of each run
    results.sqlite    the results store (MAEBENCH_RESULTS or --results overrides it)
"""
from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    return Path(os.environ.get("MAEBENCH_HOME", Path.home() / ".maebench")).expanduser()


def results_path(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("MAEBENCH_RESULTS")
    return Path(env).expanduser() if env else home_dir() / "results.sqlite"


def weights_dir() -> Path:
    return home_dir() / "weights"


def registry_path() -> Path:
    return home_dir() / "registry.json"


def data_dir() -> Path:
    return home_dir() / "data"


def runs_dir() -> Path:
    return home_dir() / "runs"
