"""Files on disk: the free space a one-line write error names (torch_io, download, data
prepare), and a file's digest (checkpoints, downloads, archives)."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def free_space(directory: str | os.PathLike) -> str:
    """'1.5 GiB' (shutil.disk_usage of the directory, or of its nearest existing parent)."""
    d = Path(directory).absolute()
    while not d.exists() and d != d.parent:
        d = d.parent
    try:
        free = float(shutil.disk_usage(d).free)
    except OSError:
        return "unknown space"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    raise AssertionError("unreachable")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (sha256, md5, sha1, ...), read 1 MiB at a time."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
