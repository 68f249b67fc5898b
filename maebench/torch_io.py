"""Checkpoint files: written never half (temporary file, fsync, rename), read without running
the file's code unless the user trusts it (the one safe torch.load)."""
from __future__ import annotations

import argparse
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from maebench.errors import MaebenchError, first_line


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


class CheckpointError(MaebenchError):
    """A file `load` cannot read. Callers with their own wording (a weights file to register
    again, a tokenizer's trust flag) read `needs_trust` and `cause` (the exception's type name)."""

    def __init__(self, message: str, *, needs_trust: bool = False, cause: str = ""):
        super().__init__(message)
        self.needs_trust, self.cause = needs_trust, cause


# training scripts store their argparse args next to the weights
SAFE_GLOBALS = [argparse.Namespace]


def load(path: str | os.PathLike, *, trust: bool = False, mmap: bool = False) -> Any:
    """torch.load that runs no code from the file unless the user trusts it (weights_only with
    SAFE_GLOBALS); every failure is one CheckpointError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file", cause="FileNotFoundError")
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        msg = str(e)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
        if not trust and (found or "Weights only load failed" in msg):
            detail = " ".join(msg.split("WeightsUnpickler error:")[-1].split())[:200]
            why = f"it contains {found.group(1)}" if found else detail
            raise CheckpointError(
                f"{path}: refused: reading it needs full unpickling, which can run arbitrary code ({why}); "
                "if you trust its source, pass --trust-checkpoint.", needs_trust=True, cause=type(e).__name__) from None
        raise CheckpointError(f"{path}: cannot read checkpoint, truncated or corrupt ({first_line(e, 160, typed=True)}).",
                              cause=type(e).__name__) from None
    except Exception as e:  # noqa: BLE001 - zip, EOF, key and runtime errors all mean a damaged file
        raise CheckpointError(f"{path}: cannot read checkpoint, truncated or corrupt ({first_line(e, 160, typed=True)}).",
                              cause=type(e).__name__) from None
