"""Reading the official dataset archives member by member, bytes as they are (no re-encoding).

Tars are read as streams, so ImageNet's 138 GB training tar of per-class tars is unpacked in
one pass with no intermediate copy, and its digest is computed on the way. A tar has no
checksum of its own and Python's tarfile stops silently at a cut-off or damaged header, so a
stream counts as complete only when everything after tarfile's end-of-archive offset is the
zero blocks tar writes there (at least two). Zips carry a CRC per member and a central
directory at the end, which zipfile checks. Every failure is a one-line MaebenchError naming
the archive.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

from maebench.errors import MaebenchError

BLOCK = 512
CHUNK = 1 << 20
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,+ -]*$")


class StreamReader:
    """A read-only file wrapper that counts bytes, tracks the end of the last non-zero byte and
    (optionally) hashes everything read."""

    def __init__(self, f, digest: str | None = None):
        self.f = f
        self.hash = hashlib.new(digest) if digest else None
        self.total = 0
        self.last_nonzero_end = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if data:
            if self.hash is not None:
                self.hash.update(data)
            kept = len(data.rstrip(b"\0"))
            if kept:
                self.last_nonzero_end = self.total + kept
            self.total += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str | None:
        return self.hash.hexdigest() if self.hash is not None else None


def stream_tar(fileobj, label: str, each, *, digest: str | None = None, gz: bool = False) -> str | None:
    """Call each(member, f) for every member of the tar read from `fileobj` (f: the member's
    bytes, None unless a regular file), in archive order; check that the archive ends as tar
    ends an archive; return the hex digest of the raw bytes when `digest` names an algorithm.
    `label` names the archive in errors (for a tar inside a tar: 'outer.tar: inner.tar')."""
    raw = StreamReader(fileobj, digest)
    body = StreamReader(gzip.GzipFile(fileobj=raw, mode="rb")) if gz else raw
    try:
        with tarfile.open(fileobj=body, mode="r|", bufsize=CHUNK) as tar:
            for member in tar:
                each(member, tar.extractfile(member) if member.isfile() else None)
            end = tar.offset
        body.drain()
        raw.drain()
    except _TAR_ERRORS as e:
        raise MaebenchError(f"{label}: not a complete {'tar.gz' if gz else 'tar'} archive ({e or type(e).__name__})") from None
    if body.last_nonzero_end > end:
        raise MaebenchError(f"{label}: damaged tar archive (unreadable header at byte {end}, data follows it)")
    if body.total - end < 2 * BLOCK:
        raise MaebenchError(f"{label}: truncated tar archive (it ends at byte {body.total} without tar's "
                            "end-of-archive blocks)")
    return raw.hexdigest()


def list_tar(path: Path) -> list[tarfile.TarInfo]:
    """The members of an uncompressed tar file, read header by header (member data is skipped
    by seeking, so listing ImageNet's training tar takes seconds)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            return tar.getmembers()
    except _TAR_ERRORS as e:
        raise MaebenchError(f"{path}: not a readable tar archive ({e or type(e).__name__})") from None
    except OSError as e:
        raise MaebenchError(f"cannot read {path}: {e.strerror or e}") from None


@contextlib.contextmanager
def open_zip(path: Path):
    """zipfile.ZipFile of `path`; a cut-off or non-zip file (no central directory) and any
    damaged member read inside the block are one-line errors naming the file."""
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise MaebenchError(f"{path}: not a complete zip archive ({e or type(e).__name__})") from None
    except OSError as e:
        raise MaebenchError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        with zf:
            yield zf
    except _ZIP_ERRORS as e:
        raise MaebenchError(f"{path}: damaged zip archive ({e or type(e).__name__})") from None


def safe_relative(name: str, label: str) -> Path:
    """A member name as a relative path, refusing absolute names, '..' and odd characters
    (an archive never writes outside the directory being prepared)."""
    parts = [p for p in name.rstrip("/").split("/") if p not in ("", ".")]
    if name.startswith("/") or not parts or any(not _SAFE_PART.match(p) for p in parts):
        raise MaebenchError(f"{label}: unexpected member name {name!r}")
    return Path(*parts)


def write_member(f, dest: Path, label: str, name: str) -> int:
    """Copy a member's bytes to a new file `dest` (never over an existing one); its size."""
    try:
        with open(dest, "xb") as out:
            shutil.copyfileobj(f, out, CHUNK)
            return out.tell()
    except FileExistsError:
        raise MaebenchError(f"{label}: member {name} appears twice") from None


def file_size(path: Path) -> int:
    return os.stat(path).st_size


def zip_files(zf: zipfile.ZipFile, path: Path, top: str) -> list[tuple[zipfile.ZipInfo, Path]]:
    """(member, path below `top`/) of every file of a zip whose members must all lie in the one
    top-level folder `top`/ (the official archives' layout); anything else is an error naming
    the zip, which catches an archive of another dataset or split given in its place."""
    files = []
    for info in zf.infolist():
        rel = safe_relative(info.filename, str(path))
        if rel.parts[0] != top:
            raise MaebenchError(f"{path}: member {info.filename} is not in the folder {top}/ that the official "
                                f"{path.name} holds (is it another archive?)")
        if not info.is_dir() and len(rel.parts) > 1:
            files.append((info, Path(*rel.parts[1:])))
        elif not info.is_dir():
            raise MaebenchError(f"{path}: member {info.filename} is a file where the folder {top}/ should be")
    if not files:
        raise MaebenchError(f"{path}: no files in {top}/")
    return files


def extract_zip(zf: zipfile.ZipFile, files: list[tuple[zipfile.ZipInfo, Path]], root: Path, path: Path) -> None:
    """Write each member's bytes to root / its path (CRC-checked by zipfile as it reads)."""
    for info, rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as f:
            write_member(f, root / rel, str(path), info.filename)
