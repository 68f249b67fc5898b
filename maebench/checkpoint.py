"""Checkpoint files that are never half-written: write to a temporary file, fsync, rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from maebench.errors import MaebenchError


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike, *, trust: bool = False) -> dict:
    """torch.load with weights_only=True unless the user trusts the file."""
    path = Path(path)
    if not path.is_file():
        raise MaebenchError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) and not trust:
            raise MaebenchError(f"{path} needs full unpickling, which can run arbitrary code; "
                                f"pass --trust-checkpoint if you trust its source ({first[:160]})") from None
        raise MaebenchError(f"cannot read checkpoint {path}: {first[:200]}") from None
