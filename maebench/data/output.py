"""Writing datasets: deterministic bytes and all-or-nothing publication.

A dataset is written into a hidden sibling directory and renamed into place at the end, so a
crash or Ctrl-C never leaves a half-written set where a reader would take it for a whole one.
`meta.json` marks a directory as written by maebench; only such directories are replaced.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from maebench.errors import MaebenchError

META = "meta.json"
JPEG_QUALITY = 90


def write_json(path: Path, obj) -> None:
    """Sorted keys and no timestamps: the same object always gives the same bytes."""
    path.write_text(json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n")


def write_meta(root: Path, meta: dict) -> None:
    root.joinpath(META).write_text(json.dumps(meta, sort_keys=True, indent=2) + "\n")


def save_png(path: Path, array) -> None:
    """uint8 [H, W] ('L') or [H, W, 3] ('RGB'); PIL writes no time chunk, so bytes are stable."""
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")


def save_jpeg(path: Path, array) -> None:
    """Fixed quality and 4:2:0 subsampling, no EXIF: stable bytes for a given libjpeg."""
    from PIL import Image

    Image.fromarray(array).save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False)


@contextlib.contextmanager
def publish_dir(target: Path, replace: bool = True):
    """Yield a fresh temporary directory next to `target`; on success rename it to `target`.

    replace=True swaps out an existing `target` that maebench wrote (it has meta.json); a
    foreign directory is never deleted. replace=False keeps an existing complete `target`
    (another process won the race) and discards ours."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not (target / META).is_file():
        raise MaebenchError(f"{target} exists and was not written by maebench (no {META}); "
                            "remove it or choose another --out")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the published set should not be
    try:
        yield tmp
        _rename_into_place(tmp, target, replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _rename_into_place(tmp: Path, target: Path, replace: bool) -> None:
    if target.exists():
        if not replace:
            return  # a concurrent writer finished first; its copy is equivalent
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / "d")
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / META).is_file():
            raise
