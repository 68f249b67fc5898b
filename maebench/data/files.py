"""Reading helpers shared by every reader: each failure becomes a one-line MaebenchError that
names the path, so a bad file in a 100k-image set is found without a traceback hunt."""
from __future__ import annotations

import os
from pathlib import Path

from maebench.errors import MaebenchError, first_line

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Exceptions PIL raises for unreadable, truncated or hostile files.
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def require_dir(path: str | os.PathLike, what: str = "data directory") -> Path:
    """`path` as a Path, or a MaebenchError naming it when it is missing or unreadable."""
    p = Path(path).expanduser()
    if not p.exists():
        raise MaebenchError(f"{what} not found: {p}")
    if not p.is_dir():
        raise MaebenchError(f"{what} is not a directory: {p}")
    if not os.access(p, os.R_OK | os.X_OK):
        raise MaebenchError(f"{what} is not readable: {p}")
    return p


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise MaebenchError(f"{what} not found: {p}")
    if not os.access(p, os.R_OK):
        raise MaebenchError(f"{what} is not readable: {p}")
    return p


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def load_rgb(path: str | os.PathLike):
    """Decode an image fully (so truncation shows up here, not inside a DataLoader worker)
    and return it as a PIL RGB image."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise MaebenchError(f"image file not found: {path}") from None
    except _PIL_ERRORS as e:
        raise MaebenchError(f"cannot read image {path}: {first_line(e)}") from None


def load_label(path: str | os.PathLike):
    """A single-channel label map as a numpy array [H, W] of its stored integer values.
    'P' (palette) maps keep their indices, as ADE20K and VOC tools expect."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "P", "I", "I;16", "1"):
                raise MaebenchError(f"label map {path} has mode {img.mode}; expected a single-channel "
                                    "(L, P or I) PNG of class indices")
            return np.array(img)
    except FileNotFoundError:
        raise MaebenchError(f"label file not found: {path}") from None
    except _PIL_ERRORS as e:
        raise MaebenchError(f"cannot read label map {path}: {first_line(e)}") from None


def verify_image(path: str | os.PathLike, decode: bool = True) -> str | None:
    """None when the image is readable, else the reason. PIL's verify() checks structure (and
    PNG CRCs); `decode` also decodes the pixels, which is what catches a truncated JPEG."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        if decode:
            with Image.open(path) as img:
                img.load()
    except FileNotFoundError:
        return "file not found"
    except _PIL_ERRORS as e:
        return first_line(e)
    return None


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the header only; None when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except _PIL_ERRORS:
        return None
