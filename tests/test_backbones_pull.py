"""`maebench backbones pull NAME` and `register NAME --checkpoint URL` against a server on
127.0.0.1: the catalogue entry mae-vit-b is pointed at a small real MAE-layout checkpoint."""
from __future__ import annotations

import hashlib
import io
import json

import pytest
import torch
from http_helpers import serve
from test_backbones_support import ARCH, IMG, PATCH, home, tiny_vit  # noqa: F401

from maebench import download
from maebench.backbones import catalogue as catalogue_module
from maebench.cli import main


def _checkpoint(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": tiny_vit(seed).state_dict()}, buf)
    return buf.getvalue()


BODY = _checkpoint()
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture(autouse=True)
def online(monkeypatch):
    for var in download.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)


def _point_catalogue(monkeypatch, url: str, sha256: str | None, md5: str | None = None) -> None:
    """mae-vit-b, at the tiny test architecture, published at `url`."""
    raw = catalogue_module._raw()
    entry = {**raw["backbones"]["mae-vit-b"], "arch": ARCH, "patch_size": PATCH, "img_size": IMG,
             "url": url, "sha256": sha256, "md5": md5, "file": "tiny_mae.pth"}
    patched = {**raw, "backbones": {**raw["backbones"], "mae-vit-b": entry}}
    monkeypatch.setattr(catalogue_module, "_raw", lambda: patched)


def _registry(home) -> dict:
    path = home / "registry.json"
    return json.loads(path.read_text())["backbones"] if path.exists() else {}


def _error_line(capsys) -> str:
    """The error: one line, the last on stderr (after a download's progress line, if any)."""
    err = capsys.readouterr().err.strip()
    line = err.rsplit("\n", 1)[-1]
    assert line.startswith("maebench: error: ") and err.count("maebench: error") == 1
    return line


def test_pull_downloads_resumes_verifies_registers_and_show_lists_it(home, monkeypatch, capsys):
    with serve({"/tiny_mae.pth": BODY}, cut_first=len(BODY) // 3) as srv:
        _point_catalogue(monkeypatch, srv.url("/tiny_mae.pth"), SHA)
        assert main(["backbones", "pull", "mae-vit-b"]) == 0
        assert [r for _, r in srv.requests] == [None, f"bytes={len(BODY) // 3}-"]
        out = capsys.readouterr().out
        assert "registered mae-vit-b: vit-micro" in out and f"sha256: {SHA} (published sha256)" in out
        downloaded = home / "weights" / "downloads" / "mae-vit-b" / "tiny_mae.pth"
        assert downloaded.read_bytes() == BODY
        rec = _registry(home)["mae-vit-b"]
        assert rec["sha256"] == SHA and rec["downloaded_from"] == srv.url("/tiny_mae.pth")
        assert main(["backbones", "show", "mae-vit-b"]) == 0
        out = capsys.readouterr().out
        assert "(present)" in out and SHA in out
        assert main(["backbones", "pull", "mae-vit-b"]) == 0          # already there: nothing downloaded
        assert "already registered" in capsys.readouterr().out and len(srv.requests) == 2
        assert main(["backbones", "pull", "mae-vit-b", "--force"]) == 0   # the verified download is reused
        assert len(srv.requests) == 2


def test_pull_with_a_wrong_checksum_registers_nothing(home, monkeypatch, capsys):
    with serve({"/tiny_mae.pth": BODY}) as srv:
        _point_catalogue(monkeypatch, srv.url("/tiny_mae.pth"), "f" * 64)
        assert main(["backbones", "pull", "mae-vit-b"]) == 1
        line = _error_line(capsys)
        assert srv.url("/tiny_mae.pth") in line and "f" * 64 in line and SHA in line
    assert _registry(home) == {}
    assert [p for p in home.rglob("*") if p.is_file()] == []


def test_pull_checks_the_md5_prefix_the_release_publishes(home, monkeypatch, capsys):
    """The MAE README publishes md5 prefixes (8cad7c for ViT-B): a match is said, a mismatch
    removes the download and registers nothing."""
    md5 = hashlib.md5(BODY).hexdigest()
    assert catalogue_module.catalogue()["mae-vit-b"]["md5"] == "8cad7c"
    with serve({"/tiny_mae.pth": BODY}) as srv:
        _point_catalogue(monkeypatch, srv.url("/tiny_mae.pth"), None, md5="0" * 6 if md5[:6] != "0" * 6 else "1" * 6)
        assert main(["backbones", "pull", "mae-vit-b"]) == 1
        line = _error_line(capsys)
        assert "md5 mismatch" in line and md5 in line and srv.url("/tiny_mae.pth") in line
        assert _registry(home) == {} and [p for p in home.rglob("*") if p.is_file()] == []
        _point_catalogue(monkeypatch, srv.url("/tiny_mae.pth"), None, md5=md5[:6])
        assert main(["backbones", "pull", "mae-vit-b"]) == 0
        assert f"published md5 prefix {md5[:6]}" in capsys.readouterr().out


def test_pull_without_a_published_checksum_trusts_the_first_download_and_checks_later_ones(home, monkeypatch, capsys):
    files = {"/tiny_mae.pth": BODY}
    with serve(files) as srv:
        _point_catalogue(monkeypatch, srv.url("/tiny_mae.pth"), None)
        assert main(["backbones", "pull", "mae-vit-b"]) == 0
        assert f"sha256: {SHA} (no published sha256: trusted on first use" in capsys.readouterr().out
        assert _registry(home)["mae-vit-b"]["sha256"] == SHA
        (home / "weights" / "downloads" / "mae-vit-b" / "tiny_mae.pth").unlink()
        files["/tiny_mae.pth"] = _checkpoint(seed=1)                   # the published file changed
        assert main(["backbones", "pull", "mae-vit-b", "--force"]) == 1
        assert f"expected {SHA}" in _error_line(capsys)
    assert _registry(home)["mae-vit-b"]["sha256"] == SHA               # the first registration stands


def test_pull_refuses_unknown_names_entries_without_a_download_and_offline_mode(home, monkeypatch, capsys):
    assert main(["backbones", "pull", "mae-vit-bb"]) == 2
    assert "unknown backbone 'mae-vit-bb' (did you mean: mae-vit-b" in _error_line(capsys)
    assert main(["backbones", "pull", "mocov3-vit-l"]) == 1
    assert "'mocov3-vit-l' has no public download: see facebookresearch/moco-v3" in _error_line(capsys)
    assert main(["backbones", "pull", "scratch-vit-b"]) == 2
    assert "random initialisation" in _error_line(capsys)
    with serve({"/tiny_mae.pth": BODY}) as srv:
        _point_catalogue(monkeypatch, srv.url("/tiny_mae.pth"), SHA)
        monkeypatch.setenv("MAEBENCH_OFFLINE", "1")
        assert main(["backbones", "pull", "mae-vit-b"]) == 2
        assert "offline (MAEBENCH_OFFLINE=1)" in _error_line(capsys)
        assert srv.requests == []
    assert _registry(home) == {}


def test_register_from_a_url_downloads_checks_the_given_sha256_and_records_the_address(home, capsys):
    with serve({"/x/enc.pth": BODY, "/page": (b"<html></html>", "text/html")}) as srv:
        url = srv.url("/x/enc.pth")
        assert main(["backbones", "register", "mine", "--checkpoint", url, "--sha256", "0" * 64]) == 1
        assert f"{url}: sha256 mismatch: expected {'0' * 64}, got {SHA}" in _error_line(capsys)
        assert _registry(home) == {}
        assert main(["backbones", "register", "mine", "--checkpoint", srv.url("/page")]) == 1
        assert "returned an HTML page, not a file" in _error_line(capsys)
        assert main(["backbones", "register", "mine", "--checkpoint", url, "--sha256", SHA[:12]]) == 0
        assert f"registered mine: {ARCH}" in capsys.readouterr().out
        rec = _registry(home)["mine"]
        assert rec["source"] == url and rec["downloaded_from"] == url and rec["sha256"] == SHA
        n = len(srv.requests)
        assert main(["backbones", "register", "mine", "--checkpoint", url]) == 1      # registered: no download
        assert "--force" in _error_line(capsys) and len(srv.requests) == n


def test_register_checks_sha256_of_a_local_file_too(home, tmp_path, capsys):
    path = tmp_path / "enc.pth"
    path.write_bytes(BODY)
    assert main(["backbones", "register", "mine", "--checkpoint", str(path), "--sha256", "abcdef12"]) == 1
    assert f"{path}: sha256 mismatch: expected abcdef12, got {SHA}" in _error_line(capsys)
    assert main(["backbones", "register", "mine", "--checkpoint", str(path), "--sha256", "xyz"]) == 2
    assert _registry(home) == {}


def test_every_catalogue_download_says_whether_a_sha256_is_published():
    import re
    for name, e in catalogue_module.catalogue().items():
        if e.get("url"):
            assert "sha256" in e, name
            assert e["sha256"] is None or re.fullmatch(r"[0-9a-f]{8,64}", e["sha256"]), name
    assert catalogue_module.catalogue()["supervised-vit-b"]["sha256"] == "b5f2ef4d"   # from the file name


def test_a_catalogue_backbone_without_weights_names_the_pull_command(home):
    from maebench.backbones.registry import entry, missing_weights_error
    assert "run: maebench backbones pull mae-vit-b (or download mae_pretrain_vit_base.pth from https://" \
        in str(missing_weights_error(entry("mae-vit-b")))
