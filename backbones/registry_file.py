"""$MAEBENCH_HOME/registry.json: the user's registered backbones, changed only under a lock.

Two registrations running at once (two shells, or a pretraining job finishing while the user
registers a download) must not lose each other's entry, so every read-modify-write holds an
exclusive flock on registry.lock, and the new file replaces the old one with os.replace (a
reader sees either the old or the new registry, never half of one).

    {"version": 1, "backbones": {"NAME": {arch, patch_size, ..., sha256, size, source, format,
                                           registered, weights: "weights/NAME.pth"}}}
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from maebench.errors import MaebenchError
from maebench.home import home_dir, registry_path

VERSION = 1
LOCK_TIMEOUT_S = 120.0


def read() -> dict[str, Any]:
    """The registry (an empty one when the file does not exist yet)."""
    path = registry_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": VERSION, "backbones": {}}
    except (OSError, ValueError) as e:
        raise MaebenchError(f"{path}: unreadable registry ({e}); fix or delete it") from None
    if not isinstance(data, dict) or not isinstance(data.get("backbones"), dict):
        raise MaebenchError(f"{path}: not a maebench registry (no 'backbones' object)")
    return data


@contextmanager
def locked() -> Iterator[None]:
    """Hold the registry lock (blocking other registrations) for a read-modify-write."""
    home = home_dir()
    home.mkdir(parents=True, exist_ok=True)
    lock_path = home / "registry.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise MaebenchError(f"{lock_path}: another maebench process holds the registry "
                                        f"lock for over {LOCK_TIMEOUT_S:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same directory and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(data: dict[str, Any]) -> None:
    """Replace the registry; call only while holding `locked()`."""
    data = {"version": VERSION, "backbones": dict(sorted(data["backbones"].items()))}
    write_atomic(registry_path(), (json.dumps(data, indent=2) + "\n").encode("utf-8"))
