"""An HTTP server on 127.0.0.1 whose file can change between requests, for resume tests.

It sends ETag and Last-Modified, honours Range, and honours If-Range only when ``honour_if_range`` is
set (many real servers and proxies do not), so both the compliant and the naive server are tested.
"""

from __future__ import annotations

import hashlib
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChangingServer:
    def __init__(self, body: bytes, *, honour_if_range: bool = True, validators: bool = True):
        self.body = body
        self.version = 0
        self.honour_if_range = honour_if_range
        self.validators = validators
        self.cut_after: int | None = None  # bytes sent before dropping the next response
        self.range_start_shift = 0  # a broken server: answers a range from the wrong offset
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.headers.append(dict(self.headers))
                body = server.body
                etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
                modified = formatdate(1_700_000_000 + server.version, usegmt=True)
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and if_range and server.honour_if_range and if_range not in (etag, modified):
                    rng = None  # RFC 9110: a stale validator gets the whole current file
                start = 0
                if rng:
                    start = int(rng.removeprefix("bytes=").split("-")[0]) + server.range_start_shift
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
                if server.validators:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", modified)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                cut, server.cut_after = server.cut_after, None
                self.wfile.write(chunk if cut is None else chunk[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def change(self, body: bytes) -> None:
        self.body, self.version = body, self.version + 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/file.bin"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
