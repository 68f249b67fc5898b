"""Weights by name: `maebench backbones pull NAME` and `register NAME --checkpoint URL`.

    pull(name, force=...) -> Pulled           download a catalogue entry's published file, verify, register
    download_for(name, url, sha256=...) -> Path   the same download for a URL the user names

Files land in $MAEBENCH_HOME/weights/downloads/NAME/FILE (maebench/download.py: resumable, renamed
into place only when complete and verified) and are then registered by registry.register, exactly
as `backbones register NAME --checkpoint FILE` does. The checksum checked is the catalogue's
`sha256` (a full digest or a published prefix); an entry without one is trusted on first use: the
digest computed then is recorded in the registry, and a later pull of the same URL must match it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from maebench.backbones import registry_file
from maebench.backbones.catalogue import catalogue
from maebench.backbones.registry import BackboneEntry, check_name, entry, register
from maebench.disk import file_digest
from maebench.download import fetch
from maebench.errors import MaebenchError, UsageError, unknown
from maebench.home import downloads_dir


@dataclass(frozen=True)
class Pulled:
    entry: BackboneEntry
    path: Path | None           # the downloaded file (None: already registered, nothing done)
    check: str                  # how the file was verified, in words


def pull(name: str, *, force: bool = False, progress: bool = True) -> Pulled:
    cat = catalogue().get(name)
    rec = registry_file.read()["backbones"].get(name)
    if cat is None:
        if rec is not None:
            raise UsageError(f"'{name}' was registered by you, not taken from the catalogue: nothing to pull")
        raise unknown("backbone", name, [n for n, c in catalogue().items() if c.get("url")])
    if cat["family"] == "scratch":
        raise UsageError(f"'{name}' is a random initialisation: it has no weights to pull")
    url = cat.get("url")
    if not url:
        raise MaebenchError(f"'{name}' has no public download: {' '.join(str(cat.get('source') or 'unknown').split())}")
    if rec is not None and not force:
        return Pulled(entry(name), None, f"already registered (from {rec.get('source_path')}); nothing downloaded, "
                                         "pass --force to register it again")
    expected = str(cat["sha256"]) if cat.get("sha256") is not None else None
    check = "published sha256"
    if expected and len(expected) < 64:
        check = f"published sha256 prefix {expected}"
    elif not expected and rec is not None and rec.get("downloaded_from") == url and rec.get("sha256"):
        expected, check = rec["sha256"], "sha256 recorded at the first download"
    elif not expected:
        check = "no published sha256: trusted on first use, its sha256 recorded in the registry"
    dest = downloads_dir() / name / (cat.get("file") or _basename(url))
    path = _download(url, dest, expected, progress=progress, reuse=True)
    if cat.get("md5"):                      # the release's own published hash (the MAE README's md5 prefixes)
        _check_md5(path, str(cat["md5"]), url)
        check += f"; published md5 prefix {cat['md5']}"
    register(name, path, force=force)
    record_origin(name, url, check)
    return Pulled(entry(name), path, check)


def download_for(name: str, url: str, *, sha256: str | None, force: bool, progress: bool = True, arch=None,
                 patch_size=None, family=None) -> Path:
    """Download `url` for `register NAME --checkpoint URL`, after the checks registration would
    fail on anyway (the name, an existing registration), so that nothing is downloaded in vain."""
    check_name(name, arch=arch, patch_size=patch_size, family=family)
    existing = registry_file.read()["backbones"].get(name)
    if existing is not None and not force:
        raise MaebenchError(f"backbone '{name}' is already registered (from {existing.get('source_path')}); "
                            "pass --force to replace it")
    return _download(url, downloads_dir() / name / _basename(url), sha256, progress=progress, reuse=False)


def _download(url: str, dest: Path, sha256: str | None, *, progress: bool, reuse: bool) -> Path:
    """fetch, or a complete earlier download of the same file when `reuse` (checked again when a
    checksum is known; a file that fails it is downloaded anew)."""
    if reuse and dest.is_file() and (sha256 is None or file_digest(dest).startswith(sha256.strip().lower())):
        return dest
    return fetch(url, dest, sha256=sha256, progress=progress)


def _check_md5(path: Path, prefix: str, url: str) -> None:
    """The downloaded file's md5 starts with the published `prefix`, else it is removed and the
    error names the URL and both digests (nothing registered)."""
    got = file_digest(path, "md5")
    if not got.startswith(prefix.strip().lower()):
        path.unlink()
        raise MaebenchError(f"{url}: md5 mismatch: the release publishes {prefix}..., got {got}; "
                            "the download was removed")


def record_origin(name: str, url: str, check: str) -> None:
    """Note in the registry record where the file came from and how it was verified."""
    with registry_file.locked():
        reg = registry_file.read()
        rec = reg["backbones"].get(name)
        if rec is not None:
            rec["downloaded_from"], rec["download_check"] = url, check
            registry_file.write(reg)


def _basename(url: str) -> str:
    name = Path(unquote(urlparse(url).path)).name
    if not name or name in (".", ".."):
        raise UsageError(f"{url}: the URL names no file (it ends in '/'); give the address of the file itself")
    return name
