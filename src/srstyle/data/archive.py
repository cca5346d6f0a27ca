"""Safe extraction of tar and zip archives.

An archive is inspected whole before anything is written: one absolute path, ``..`` component, link,
device or FIFO member, a name listed twice, or a name that is both a file and a folder refuses the entire
archive, naming the member. So do more members than ``max_members``, a declared size over
``max_total_bytes``, an expansion ratio over ``max_ratio`` (a decompression bomb) and too little free disk
space. Only regular files and folders are ever created, and every target is checked to stay inside the
destination.

Extraction goes into a temporary folder beside the destination, which gets a completion marker and is then
renamed into place: a folder under the destination's name is always a complete extraction, and an
interrupted one (a crash, kill -9, a full disk) is removed and redone by the next run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MARKER = ".srstyle-extracted.json"
_FREE_SPACE_MARGIN = 64 * 2**20
_RATIO_MIN_BYTES = 2**20  # below this a member's ratio is not judged (tiny files compress arbitrarily well)


class ArchiveError(ValueError):
    """An archive that cannot be extracted here; the message names the archive and what to do."""


class UnsafeArchiveError(ArchiveError):
    """The archive holds a member that would escape the destination, is not a plain file/folder, or is a
    decompression bomb (too many members, too high an expansion ratio, too large)."""


@dataclass(frozen=True)
class Limits:
    max_total_bytes: int = 20 * 2**30
    max_members: int = 500_000  # COCO train2014 has 82,783 files
    max_ratio: float = 100.0  # photos barely compress (ratio ~1); zip bombs reach 1000s


def _check_name(archive: Path, name: str) -> PurePosixPath:
    normalised = name.replace("\\", "/")
    p = PurePosixPath(normalised)
    if not normalised or p.is_absolute() or normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing the archive")
    if any(part == ".." for part in p.parts):
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing the archive")
    return p


def _inside(dest: Path, rel: PurePosixPath) -> Path:
    target = (dest / Path(*rel.parts)).resolve()
    if target != dest and dest not in target.parents:
        raise UnsafeArchiveError(f"member {str(rel)!r} resolves outside {dest}; refusing the archive")
    return target


@dataclass(frozen=True)
class _Member:
    rel: PurePosixPath
    is_dir: bool
    size: int
    compressed: int | None  # zip only
    handle: object


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[_Member]:
    members = []
    for m in tf.getmembers():
        rel = _check_name(archive, m.name)
        if m.issym() or m.islnk():
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a link; refusing the archive")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: member {m.name!r} is a device, FIFO or other special file; refusing the archive"
            )
        members.append(_Member(rel, m.isdir(), m.size, None, m))
    return members


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zf.infolist():
        rel = _check_name(archive, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 = permission bits only (a plain file)
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; refusing the archive")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a special file; refusing the archive")
        members.append(_Member(rel, info.is_dir(), info.file_size, info.compress_size, info))
    return members


def _check_members(archive: Path, members: list[_Member], limits: Limits) -> int:
    """Refuse bombs, duplicates and file/folder conflicts; return the declared total size."""
    if len(members) > limits.max_members:
        raise UnsafeArchiveError(
            f"{archive}: has {len(members)} members, over the limit of {limits.max_members}; refusing the archive"
        )
    total = sum(m.size for m in members)
    if total > limits.max_total_bytes:
        raise UnsafeArchiveError(f"{archive}: expands to {total} bytes, over the {limits.max_total_bytes} limit")
    packed = max(archive.stat().st_size, 1)
    if total > _RATIO_MIN_BYTES and total / packed > limits.max_ratio:
        raise UnsafeArchiveError(
            f"{archive}: {packed} bytes expand to {total} ({total / packed:.0f}x, over the limit of "
            f"{limits.max_ratio:.0f}x): a decompression bomb? refusing the archive"
        )
    files: dict[PurePosixPath, str] = {}
    folders: set[PurePosixPath] = set()
    for m in members:
        if m.compressed is not None and m.size > _RATIO_MIN_BYTES and m.size / max(m.compressed, 1) > limits.max_ratio:
            raise UnsafeArchiveError(
                f"{archive}: member {str(m.rel)!r} expands {m.size / max(m.compressed, 1):.0f}x, over the limit of "
                f"{limits.max_ratio:.0f}x: a decompression bomb? refusing the archive"
            )
        if m.is_dir:
            folders.add(m.rel)
        elif m.rel in files:
            raise UnsafeArchiveError(f"{archive}: member {str(m.rel)!r} appears twice; refusing the archive")
        else:
            files[m.rel] = str(m.rel)
        folders.update(p for p in m.rel.parents if p.parts)
    clash = sorted(set(files) & folders)
    if clash:
        raise UnsafeArchiveError(
            f"{archive}: {str(clash[0])!r} is both a file and a folder in the archive; refusing the archive"
        )
    return total


def _copy(src, target: Path, size: int, archive: Path, rel: PurePosixPath) -> None:
    written = 0
    with src, open(target, "wb") as out:
        while block := src.read(1 << 20):
            written += len(block)
            if written > size:  # never trust a declared size further than it was checked
                raise UnsafeArchiveError(f"{archive}: member {str(rel)!r} holds more data than it declares")
            out.write(block)
    os.chmod(target, 0o644)


def _extract_into(archive: Path, dest: Path, limits: Limits) -> list[Path]:
    if zipfile.is_zipfile(archive):
        opened = zipfile.ZipFile(archive)
        lister, reader = _zip_members, lambda m: opened.open(m.handle)
    else:
        try:
            opened = tarfile.open(archive)
        except tarfile.TarError as exc:
            raise UnsafeArchiveError(f"{archive}: not a readable tar or zip archive: {exc}") from None
        lister, reader = _tar_members, lambda m: opened.extractfile(m.handle)
    with opened:
        try:
            members = lister(archive, opened)
        except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as exc:
            raise UnsafeArchiveError(f"{archive}: damaged or truncated archive ({exc}); delete it and rerun") from None
        total = _check_members(archive, members, limits)
        free = shutil.disk_usage(dest.parent).free
        if total + _FREE_SPACE_MARGIN > free:
            raise ArchiveError(
                f"{archive}: extracting needs {total} bytes but {dest.parent} has {free} free; free some space "
                "or move data/downloads to a larger disk"
            )
        dest.mkdir()
        written = []
        for m in members:
            target = _inside(dest, m.rel)
            if m.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                _copy(reader(m), target, m.size, archive, m.rel)
            except (tarfile.TarError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
                raise UnsafeArchiveError(
                    f"{archive}: member {str(m.rel)!r} is damaged or truncated ({exc}); delete the archive and rerun"
                ) from None
            written.append(target)
    return written


def _stamp(archive: Path) -> dict:
    st = archive.stat()
    return {"archive": archive.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_complete(archive: Path | str, dest: Path | str) -> bool:
    """True when ``dest`` is a finished extraction of this very archive file."""
    marker = Path(dest) / MARKER
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == _stamp(Path(archive))
    except (OSError, ValueError):
        return False


def safe_extract(archive: Path | str, dest: Path | str, limits: Limits = Limits(), **overrides) -> list[Path]:
    """Extract ``archive`` (tar, tar.gz/bz2/xz or zip) to ``dest`` (replaced whole); return the files written.

    ``overrides`` are fields of :class:`Limits` (e.g. ``max_total_bytes=...``).
    """
    archive, dest = Path(archive), Path(dest)
    limits = Limits(**{**limits.__dict__, **overrides})
    dest.parent.mkdir(parents=True, exist_ok=True)
    parent = dest.parent.resolve()
    for stale in parent.glob(f".{dest.name}.partial-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        written = _extract_into(archive, tmp, limits)
        (tmp / MARKER).write_text(json.dumps(_stamp(archive)), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = parent / dest.name
    return [final / p.relative_to(tmp) for p in written]


def extract_once(archive: Path | str, dest: Path | str, limits: Limits = Limits()) -> Path:
    """``dest`` holding the complete extraction of ``archive``: reused when its marker matches, else
    (missing, interrupted, or from another archive) extracted afresh."""
    if not is_complete(archive, dest):
        safe_extract(archive, dest, limits)
    return Path(dest)
