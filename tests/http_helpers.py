"""A local HTTP file server for the download tests (no tests here): 127.0.0.1 only.

    with serve({"/w.pth": b"...", "/page": (b"<html>", "text/html")}, cut_first=1000) as srv:
        srv.url("/w.pth"); srv.requests   # [(path, Range header or None), ...]

It answers Range requests (`bytes=N-`) with 206 and a Content-Range, unknown paths with 404, and
with `cut_first=N` closes the connection after N bytes of the first response (Content-Length
still announcing the whole file), as a dropped connection does.
"""
from __future__ import annotations

import contextlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server_version = "maebench-test"

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        item = srv.files.get(self.path)
        if item is None:
            self.send_error(404, "Not Found")
            return
        body, ctype = item if isinstance(item, tuple) else (item, "application/octet-stream")
        start = 0
        found = re.fullmatch(r"bytes=(\d+)-", rng or "") if srv.ranges else None
        if found:
            start = int(found.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if srv.cut_first is not None and len(srv.requests) == 1:
            self.wfile.write(payload[:srv.cut_first])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@contextlib.contextmanager
def serve(files: dict, *, cut_first: int | None = None, ranges: bool = True):
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.cut_first, srv.ranges, srv.requests = files, cut_first, ranges, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
