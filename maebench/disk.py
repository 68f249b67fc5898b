"""Free space on a disk, for the one-line errors of a write that failed (torch_io, download)."""
from __future__ import annotations

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
