"""Streaming, resumable, checksummed downloads.

A partial download lives at ``<name>.part``; a rerun asks the server for the remaining bytes with an HTTP
Range request and appends them (starting over if the server ignores the range). The finished file is
verified against its pinned sha256 before it is renamed into place, so a file under its final name is
always complete and correct.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match; the message says what to do."""


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "srstyle-fetch/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - user-configured dataset URL


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

    With ``sha256=None`` the file is accepted and its checksum is written beside it (``.sha256``) and
    logged so the user can pin it; later downloads are then checked against that recorded value.
    ``expected_bytes`` (a published archive size) is checked against the server's Content-Length before
    any byte is written, so a moved or replaced archive fails in seconds, not after hours.
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
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range past the end: the part file is already complete
            response = None
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: cannot connect ({exc}); check the URL or your network/proxy") from None

    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            if offset and status != 206:
                log.info("%s: server ignored the Range request; restarting the download", url)
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            if expected_bytes is not None and total is not None and total != expected_bytes:
                raise DownloadError(
                    f"{url}: the server offers {total} bytes but the published size is {expected_bytes}; "
                    "the archive has changed or the URL is wrong (nothing was written)"
                )
            mode = "ab" if offset else "wb"
            with open(part, mode) as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
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
            if total is not None and part.stat().st_size < total:
                raise DownloadError(
                    f"{url}: got {part.stat().st_size} of {total} bytes; rerun to resume the download"
                )

    actual = sha256_file(part)
    if sha256 is not None and actual != sha256:
        rejected = dest.with_name(dest.name + ".sha256-mismatch")
        os.replace(part, rejected)
        raise DownloadError(
            f"{url}: sha256 mismatch: expected {sha256}, got {actual}. The file was kept at {rejected} "
            "for inspection; check the URL and the pinned checksum (data.sha256)"
        )
    if sha256 is None:
        recorded.write_text(f"{actual}  {dest.name}\n")
        log.warning(
            "%s has no pinned sha256; recorded %s in %s. Pin it with data.sha256 to detect changes.",
            url, actual, recorded,
        )
    os.replace(part, dest)
    return dest
