"""Downloading one file over HTTP(S), resumably and verified (stdlib urllib, a tqdm line on stderr).

    fetch(url, dest, sha256=..., expected_size=...) -> dest
    offline() -> the switch that forbids any network access (MAEBENCH_OFFLINE=1 or HF_HUB_OFFLINE=1)

Bytes go to `dest` + ".part"; a cut connection resumes with an HTTP Range request (a 206 appends,
a 200 starts over), and a .part left by an earlier interrupted call is resumed the same way. Only a
complete file whose sha256 matches is renamed (os.replace) onto `dest`: `dest` is never half a file.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from maebench.disk import file_digest, free_space
from maebench.errors import MaebenchError, UsageError

OFFLINE_VARS = ("MAEBENCH_OFFLINE", "HF_HUB_OFFLINE")
TRIES = 5                          # connections per fetch, as long as each one brings new bytes
CHUNK = 1 << 20
TIMEOUT_S = 60
_HTML = (b"<!doctype", b"<html")


class DownloadError(MaebenchError):
    """A download that failed; the message names the URL (or the destination, for a write)."""


def offline() -> str | None:
    """The variable that switches the network off ('MAEBENCH_OFFLINE=1'), or None."""
    for var in OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    return None


def is_url(text: str) -> bool:
    return bool(re.match(r"https?://", str(text), flags=re.I))


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def fetch(url: str, dest: str | os.PathLike, *, sha256: str | None = None, expected_size: int | None = None,
          progress: bool = True) -> Path:
    """Download `url` to `dest` and return it. `sha256`: the full hex digest, or a published prefix
    of it (8+ hex digits, as torch.hub file names carry); a mismatch deletes the download."""
    dest = Path(dest)
    switch = offline()
    if switch:
        raise UsageError(f"offline ({switch}): not downloading {url}; unset it, or fetch the file elsewhere "
                         f"and pass its path")
    if sha256 is not None:
        sha256 = hex_digest(sha256, url)
    part = part_path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {dest.parent}: {e.strerror or e}") from None
    for _ in range(TRIES):
        have = part.stat().st_size if part.exists() else 0
        if _one_connection(url, part, dest, have, progress=progress):
            return _finish(url, part, dest, sha256=sha256, expected_size=expected_size)
    size = part.stat().st_size if part.exists() else 0
    raise DownloadError(f"download of {url} kept breaking off ({size} bytes after {TRIES} connections); "
                        f"run the command again to resume from {part}")


def _one_connection(url: str, part: Path, dest: Path, have: int, *, progress: bool) -> bool:
    """One request (from byte `have` when there is a partial file); True when the response ended
    complete, False when the connection was cut (the caller resumes)."""
    import http.client
    import urllib.error
    import urllib.request

    from tqdm import tqdm
    headers = {"User-Agent": "maebench", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:     # nothing after byte `have`: complete if the server says so
            if _range_total(e.headers.get("Content-Range")) == have:
                return True
            part.unlink()
            return False
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"cannot reach {url}: {getattr(e, 'reason', None) or e}") from None
    with resp:
        append = resp.status == 206 and have > 0
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = _range_total(resp.headers.get("Content-Range")) if append else length
        if not append and "text/html" in (resp.headers.get("Content-Type") or "").lower():
            _html(url, part)
        got, cut = 0, False
        bar = tqdm(total=total, initial=have if append else 0, unit="B", unit_scale=True, desc=dest.name,
                   file=sys.stderr, disable=not progress, dynamic_ncols=True)
        try:
            with _open(part, "ab" if append else "wb", dest) as f:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (http.client.IncompleteRead, ConnectionError, TimeoutError) as e:
                        if isinstance(e, http.client.IncompleteRead) and e.partial:
                            _write(f, e.partial, part, dest)
                            got += len(e.partial)
                            bar.update(len(e.partial))
                        cut = True
                        break
                    if not chunk:
                        break
                    if got == 0 and not append and chunk.lstrip()[:9].lower().startswith(_HTML):
                        f.close()
                        _html(url, part)
                    _write(f, chunk, part, dest)
                    got += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    return not cut and (length is None or got == length)


def _range_total(content_range: str | None) -> int | None:
    """The size after the slash of 'bytes 100-199/1000' or 'bytes */1000'."""
    found = re.search(r"/(\d+)\s*$", content_range or "")
    return int(found.group(1)) if found else None


def _html(url: str, part: Path):
    part.unlink(missing_ok=True)
    raise DownloadError(f"{url} returned an HTML page, not a file (a login, error or landing page?)")


def _write_error(e: OSError, part: Path, dest: Path) -> DownloadError:
    part.unlink(missing_ok=True)
    return DownloadError(f"cannot write {dest}: {e.strerror or e}; {free_space(dest.parent)} free in {dest.parent} "
                         "(the partial download was removed)")


class _open:
    """open(part, mode) whose OSErrors (opening, closing) become the one-line write error."""

    def __init__(self, part: Path, mode: str, dest: Path):
        self.part, self.mode, self.dest = part, mode, dest

    def __enter__(self):
        try:
            self.f = open(self.part, self.mode)
        except OSError as e:
            raise _write_error(e, self.part, self.dest) from None
        return self.f

    def __exit__(self, *exc):
        try:
            self.f.close()
        except OSError as e:
            if exc[0] is None:
                raise _write_error(e, self.part, self.dest) from None
        return False


def _write(f, chunk: bytes, part: Path, dest: Path) -> None:
    try:
        f.write(chunk)
        f.flush()
    except OSError as e:
        raise _write_error(e, part, dest) from None


def hex_digest(text: str, what: str) -> str:
    """`text` lower-cased when it is a sha256 digest or a prefix of one (8 to 64 hex digits)."""
    if not re.fullmatch(r"[0-9a-fA-F]{8,64}", text.strip()):
        raise UsageError(f"sha256 '{text}' for {what} is not a hex digest (8 to 64 hex digits)")
    return text.strip().lower()


def verify(path: str | os.PathLike, sha256: str, what: str) -> None:
    """MaebenchError naming `what` and both digests unless the file's sha256 starts with `sha256`."""
    got = file_digest(path)
    if not got.startswith(hex_digest(sha256, what)):
        raise DownloadError(f"{what}: sha256 mismatch: expected {sha256.strip().lower()}, got {got}")


def _finish(url: str, part: Path, dest: Path, *, sha256: str | None, expected_size: int | None) -> Path:
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise DownloadError(f"{url}: got {size} bytes, expected {expected_size}; the download was removed")
    if sha256 is not None:
        try:
            verify(part, sha256, url)
        except DownloadError as e:
            part.unlink()
            raise DownloadError(f"{e}; the download was removed") from None
    os.replace(part, dest)
    return dest
