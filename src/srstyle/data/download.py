"""Streaming, resumable, checksummed downloads.

A partial download lives at ``<name>.part`` with the server's validators (ETag / Last-Modified, total
size) in ``<name>.part.json``. A rerun resumes only when it can prove it continues the same file: it sends
``Range`` with ``If-Range``, and appends only a 206 whose ``Content-Range`` starts exactly at the partial's
size, whose total and ETag match the recorded ones. A 200 (the server ignored the range or the file
changed) starts over from zero; so does any mismatch, a 416 whose size is not the partial's, or a partial
without validators (unless a pinned sha256 will check the result). The finished file's size is checked
against the server's length and its sha256 against the pinned one before it is renamed into place, so a
file under its final name is always complete.

Without a pinned sha256 the first complete download records one (trust on first use), but never from a
resumed download: a resumed file cannot prove it is one consistent copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)
CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match; the message says what to do."""


class _StartOver(Exception):
    """The partial file cannot be continued; the message says why."""


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.full_url.startswith("https:") and not newurl.startswith("https:"):
            raise DownloadError(f"{req.full_url}: redirected to plain http ({newurl}); refusing the downgrade")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngrade)


@dataclass
class _Validators:
    url: str
    etag: str | None
    last_modified: str | None
    total: int | None

    @classmethod
    def of(cls, url: str, headers) -> "_Validators":
        return cls(url, headers.get("ETag"), headers.get("Last-Modified"), None)

    def if_range(self) -> str | None:
        if self.etag and not self.etag.startswith("W/"):  # If-Range needs a strong validator
            return self.etag
        return self.last_modified


def _read_validators(path: Path, url: str) -> _Validators | None:
    try:
        v = _Validators(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return v if v.url == url else None


def _parse_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a Content-Range header; None where absent or ``*``."""
    m = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def _request(url: str, offset: int, validators: _Validators | None, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "srstyle-fetch/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
        if validators and validators.if_range():
            request.add_header("If-Range", validators.if_range())
    return _OPENER.open(request, timeout=timeout)  # noqa: S310 - user-configured dataset URL


def _transfer(url, part, meta, offset, validators, *, timeout, progress, expected_bytes, name) -> bool:
    """Fetch into ``part`` from ``offset``; return True when the result continues an earlier partial."""
    try:
        response = _request(url, offset, validators, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            _, total = _parse_range(exc.headers.get("Content-Range"))
            if total == offset and (validators is None or validators.total in (None, total)):
                return True  # the partial already holds every byte of the same-sized file
            raise _StartOver(f"the server answered 416 for a {offset}-byte partial of a {total}-byte file") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: cannot connect ({exc}); check the URL or your network/proxy") from None

    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        if offset and status == 206:
            start, total = _parse_range(response.headers.get("Content-Range"))
            etag = response.headers.get("ETag")
            if start != offset:
                raise _StartOver(f"the server sent bytes from {start}, not from {offset}")
            if validators.total is not None and total != validators.total:
                raise _StartOver(f"the file is now {total} bytes, it was {validators.total}: it changed on the server")
            if validators.etag and etag and etag != validators.etag:
                raise _StartOver(f"its ETag changed from {validators.etag} to {etag}: it changed on the server")
            resumed = True
        else:
            if offset:
                log.warning("%s: the server sent the whole file (the range was ignored or the file changed); "
                            "starting over", url)
            offset, resumed = 0, False
            total = int(length) if length is not None else None
            validators = _Validators.of(url, response.headers)
            validators.total = total
            meta.write_text(json.dumps(validators.__dict__), encoding="utf-8")
        if expected_bytes is not None and total is not None and total != expected_bytes:
            raise DownloadError(
                f"{url}: the server offers {total} bytes but the published size is {expected_bytes}; "
                "the archive has changed or the URL is wrong"
            )
        with open(part, "r+b" if resumed else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=name, disable=not progress
        ) as bar:
            out.seek(offset)
            out.truncate()
            try:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
            except (OSError, urllib.error.URLError) as exc:
                raise DownloadError(
                    f"{url}: connection lost after {out.tell()} bytes ({exc}); rerun to resume from there"
                ) from None
            out.flush()
            os.fsync(out.fileno())
    size = part.stat().st_size
    if total is not None and size < total:
        raise DownloadError(f"{url}: got {size} of {total} bytes; rerun to resume the download")
    if total is not None and size > total:
        raise _StartOver(f"the file holds {size} bytes, more than the {total} the server announced")
    return resumed


def download(
    url: str,
    dest: Path | str,
    sha256: str | None,
    *,
    timeout: float = 60.0,
    progress: bool = True,
    expected_bytes: int | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download, and verify ``sha256``.

    With ``sha256=None`` a complete, non-resumed download's checksum is written beside it (``.sha256``)
    and logged so the user can pin it; later downloads are then checked against that recorded value.
    ``expected_bytes`` (a published archive size) is checked against the server's length before any byte
    is written, so a moved or replaced archive fails in seconds, not after hours.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recorded = dest.with_name(dest.name + ".sha256")
    if sha256 is None and recorded.is_file():
        sha256 = recorded.read_text().split()[0]
    if dest.is_file():
        if sha256 is None or sha256_file(dest) == sha256:
            return dest
        raise DownloadError(
            f"{dest}: existing file does not match the pinned sha256 {sha256}; move it away and rerun to download again"
        )
    part = dest.with_name(dest.name + ".part")
    meta = dest.with_name(dest.name + ".part.json")
    offset = part.stat().st_size if part.is_file() else 0
    validators = _read_validators(meta, url) if offset else None
    if offset and validators is None:
        log.warning("%s: no record of the server's file for the partial download; starting over", part)
        offset = 0
    elif offset and not validators.if_range() and sha256 is None:
        # Nothing ties the partial to the server's current file and no checksum will check the result.
        log.warning("%s: the server gave no ETag/Last-Modified and no sha256 is pinned; starting over", part)
        offset = 0
    try:
        resumed = _transfer(url, part, meta, offset, validators, timeout=timeout, progress=progress,
                            expected_bytes=expected_bytes, name=dest.name)
    except _StartOver as exc:
        log.warning("%s: cannot resume the partial download (%s); downloading from the start", url, exc)
        part.unlink(missing_ok=True)
        try:
            resumed = _transfer(url, part, meta, 0, None, timeout=timeout, progress=progress,
                                expected_bytes=expected_bytes, name=dest.name)
        except _StartOver as again:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the download is inconsistent ({again}); rerun later") from None

    actual = sha256_file(part)
    if sha256 is not None and actual != sha256:
        rejected = dest.with_name(dest.name + ".sha256-mismatch")
        os.replace(part, rejected)
        meta.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: sha256 mismatch: expected {sha256}, got {actual}. The file was kept at {rejected} "
            "for inspection; check the URL and the pinned checksum (data.sha256)"
        )
    if sha256 is None and resumed:
        log.warning(
            "%s has no pinned sha256 and was resumed, so no checksum is recorded (a resumed file cannot prove "
            "it is one consistent copy); its sha256 is %s: pin it with data.sha256 if you trust it", url, actual,
        )
    elif sha256 is None:
        recorded.write_text(f"{actual}  {dest.name}\n")
        log.warning(
            "%s has no pinned sha256; recorded %s in %s. Pin it with data.sha256 to detect changes.",
            url, actual, recorded,
        )
    os.replace(part, dest)
    meta.unlink(missing_ok=True)
    return dest
