"""Where maebench keeps its state.

MAEBENCH_HOME (default ~/.maebench) holds:
    registry.json     the user's registered backbones
    weights/          checkpoint files of named backbones
    weights/downloads/NAME/   published files fetched by `maebench backbones pull` (and
                      `register --checkpoint URL`), kept so that a --force re-registers offline
    data/             datasets written by `maebench data prepare`
    runs/<run_id>/    checkpoints, logs and predictions of each run
    results.sqlite    the results store (MAEBENCH_RESULTS or --results overrides it)
    stores.json       other results stores a command keeps (the demo's), so that the leaderboard
                      can find them without knowing who wrote them
"""
from __future__ import annotations

import json
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


def downloads_dir() -> Path:
    return weights_dir() / "downloads"


def registry_path() -> Path:
    return home_dir() / "registry.json"


def data_dir() -> Path:
    return home_dir() / "data"


def runs_dir() -> Path:
    return home_dir() / "runs"


def _stores_path() -> Path:
    return home_dir() / "stores.json"


def remember_store(path: str | os.PathLike, what: str) -> None:
    """Record a results store kept outside the default one; `what` names it in messages
    ("the demo's store")."""
    known = _read_stores()
    known[str(Path(path).expanduser().absolute())] = what
    target = _stores_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(json.dumps(known, indent=1))
    os.replace(tmp, target)


def known_stores() -> list[tuple[Path, str]]:
    """(path, what) of every recorded results store that exists, the newest written first."""
    found = [(Path(p), what) for p, what in _read_stores().items() if Path(p).is_file()]
    return sorted(found, key=lambda item: item[0].stat().st_mtime, reverse=True)


def _read_stores() -> dict[str, str]:
    try:
        known = json.loads(_stores_path().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}
