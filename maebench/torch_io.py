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

from maebench.disk import free_space
from maebench.errors import MaebenchError, first_line


# what torch.save's zip writer (caffe2 inline_container) raises when the file underneath stops
# taking bytes, a full disk above all: "[enforce fail at inline_container.cc:672] . unexpected pos
# ..." or "PytorchStreamWriter failed writing file ...", as a RuntimeError with a C++ trace
_STREAM_WRITER = re.compile(r"inline_container|PytorchStreamWriter|file write failed")


class WriteError(MaebenchError):
    """`save_atomic` could not write a file (a full disk, a quota, an I/O error, a parent that is
    no directory): the file it would have replaced is unchanged and no temporary file is left.
    `reason` says why in a few words; `free` is the free space where the file was going."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason, self.free = path, reason, free_space(path.parent)
        super().__init__(f"cannot write {path}: {reason}; {self.free} free in {path.parent}")


def _write_failure(e: BaseException) -> str | None:
    """Why a write failed in a few words, or None when `e` is no write failure (re-raised as is)."""
    if isinstance(e, OSError):
        return e.strerror or first_line(e)
    if isinstance(e, RuntimeError) and _STREAM_WRITER.search(str(e)):
        cause = e.__cause__ or e.__context__
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        return f"torch.save's write failed, most likely a full disk ({first_line(e, 80)})"
    return None


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save `obj` to a temporary file in the same directory, fsync it, rename it over `path`
    (then fsync the directory): `path` is either its old self or the complete new file. A write
    that fails (OSError, or torch's zip writer failing under a full disk) removes the temporary
    file and raises one-line WriteError naming the file, why, and the free space there."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        reason = _write_failure(e)
        if reason is None:
            raise
        raise WriteError(path, reason) from None
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; a file system that cannot fsync a directory is left as it is."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
