"""maebench/download.py against a server on 127.0.0.1: resume, checksum, HTTP errors, HTML pages,
a full disk, offline mode."""
from __future__ import annotations

import errno
import hashlib
import os

import pytest
from http_helpers import serve

from maebench import download
from maebench.download import DownloadError, fetch
from maebench.errors import UsageError

BODY = bytes(range(256)) * 4000          # 1 MB, every byte position distinguishable
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture(autouse=True)
def online(monkeypatch):
    for var in download.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_a_cut_download_resumes_with_range_and_verifies(tmp_path):
    dest = tmp_path / "w.pth"
    with serve({"/w.pth": BODY}, cut_first=300_000) as srv:
        assert fetch(srv.url("/w.pth"), dest, sha256=SHA, progress=False) == dest
        assert srv.requests == [("/w.pth", None), ("/w.pth", "bytes=300000-")]
    assert dest.read_bytes() == BODY
    assert not download.part_path(dest).exists()


def test_a_part_left_by_an_earlier_call_is_resumed_and_a_200_restarts_it(tmp_path):
    dest = tmp_path / "w.pth"
    download.part_path(dest).write_bytes(BODY[:1000])
    with serve({"/w.pth": BODY}) as srv:
        fetch(srv.url("/w.pth"), dest, sha256=SHA, progress=False)
        assert srv.requests == [("/w.pth", "bytes=1000-")]
    assert dest.read_bytes() == BODY
    dest.unlink()
    download.part_path(dest).write_bytes(b"x" * 1000)     # a server without ranges answers 200: start over
    with serve({"/w.pth": BODY}, ranges=False) as srv:
        fetch(srv.url("/w.pth"), dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == BODY


def test_a_published_sha256_prefix_is_checked(tmp_path):
    with serve({"/w.pth": BODY}) as srv:
        assert fetch(srv.url("/w.pth"), tmp_path / "a.pth", sha256=SHA[:8], progress=False).read_bytes() == BODY
        with pytest.raises(DownloadError) as e:
            fetch(srv.url("/w.pth"), tmp_path / "b.pth", sha256="deadbeef", progress=False)
    assert "sha256 mismatch" in _one_line(e)


def test_a_wrong_checksum_removes_the_download_and_names_url_and_both_hashes(tmp_path):
    dest = tmp_path / "w.pth"
    with serve({"/w.pth": BODY}) as srv:
        with pytest.raises(DownloadError) as e:
            fetch(srv.url("/w.pth"), dest, sha256="0" * 64, progress=False)
        line = _one_line(e)
        assert srv.url("/w.pth") in line and "0" * 64 in line and SHA in line
    assert e.value.exit_code == 1
    assert list(tmp_path.iterdir()) == []


def test_a_404_is_one_line_naming_the_url_and_status(tmp_path):
    with serve({}) as srv:
        with pytest.raises(DownloadError) as e:
            fetch(srv.url("/gone.pth"), tmp_path / "w.pth", progress=False)
        line = _one_line(e)
        assert srv.url("/gone.pth") in line and "404" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("page", [(b"<html><body>sign in</body></html>", "text/html; charset=utf-8"),
                                  (b"\n<!DOCTYPE html><html></html>", "application/octet-stream")])
def test_an_html_page_instead_of_a_file_is_refused(tmp_path, page):
    with serve({"/w.pth": page}) as srv:
        with pytest.raises(DownloadError) as e:
            fetch(srv.url("/w.pth"), tmp_path / "w.pth", progress=False)
        assert _one_line(e) == f"{srv.url('/w.pth')} returned an HTML page, not a file (a login, error or landing page?)"
    assert list(tmp_path.iterdir()) == []


class _FullDisk:
    """A file that takes 100 kB, then fails as a full disk does."""

    def __init__(self, path, mode):
        self.f = open(path, mode)

    def write(self, data):
        if self.f.tell() + len(data) > 100_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_leaves_nothing_and_names_the_destination_and_free_space(tmp_path, monkeypatch):
    dest = tmp_path / "w.pth"
    monkeypatch.setattr(download, "open", _FullDisk, raising=False)
    with serve({"/w.pth": BODY}) as srv:
        with pytest.raises(DownloadError) as e:
            fetch(srv.url("/w.pth"), dest, progress=False)
    line = _one_line(e)
    assert line.startswith(f"cannot write {dest}: No space left on device; ") and f"free in {tmp_path}" in line
    assert list(tmp_path.iterdir()) == []


def test_offline_mode_refuses_before_any_connection(tmp_path, monkeypatch):
    with serve({"/w.pth": BODY}) as srv:
        for var in download.OFFLINE_VARS:
            monkeypatch.setenv(var, "1")
            with pytest.raises(UsageError) as e:
                fetch(srv.url("/w.pth"), tmp_path / "w.pth", progress=False)
            assert f"offline ({var}=1)" in _one_line(e) and srv.url("/w.pth") in str(e.value)
            monkeypatch.delenv(var)
        assert srv.requests == []


def test_progress_goes_to_stderr_with_size_and_rate(tmp_path, capsys):
    with serve({"/w.pth": BODY}) as srv:
        fetch(srv.url("/w.pth"), tmp_path / "w.pth")
    out, err = capsys.readouterr()
    assert out == "" and "w.pth" in err and "100%" in err and "1.02M" in err and "B/s" in err
