"""Safe extraction of tar and zip archives.

An archive is inspected whole before anything is written: one absolute path, ``..`` component, link,
device or FIFO member refuses the entire archive, naming the member. Only regular files and folders are
ever created, and every target is checked to stay inside the destination.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath


class UnsafeArchiveError(ValueError):
    """The archive holds a member that would escape the destination or is not a plain file/folder."""


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


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    members = []
    for m in tf.getmembers():
        rel = _check_name(archive, m.name)
        if m.issym() or m.islnk():
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a link; refusing the archive")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: member {m.name!r} is a device, FIFO or other special file; refusing the archive"
            )
        members.append((m, rel))
    return members


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    members = []
    for info in zf.infolist():
        rel = _check_name(archive, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 = permission bits only (a plain file)
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; refusing the archive")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a special file; refusing the archive")
        members.append((info, rel))
    return members


def safe_extract(archive: Path | str, dest: Path | str, max_total_bytes: int = 20 * 2**30) -> list[Path]:
    """Extract ``archive`` (tar, tar.gz/bz2/xz or zip) into ``dest``; return the files written."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    written: list[Path] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = _zip_members(archive, zf)
            total = sum(i.file_size for i, _ in members)
            if total > max_total_bytes:
                raise UnsafeArchiveError(f"{archive}: expands to {total} bytes, over the {max_total_bytes} limit")
            targets = [(_inside(dest, rel), info) for info, rel in members]
            for target, info in targets:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                written.append(target)
        return written
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"{archive}: not a readable tar or zip archive: {exc}") from None
    with tf:
        members = _tar_members(archive, tf)
        total = sum(m.size for m, _ in members)
        if total > max_total_bytes:
            raise UnsafeArchiveError(f"{archive}: expands to {total} bytes, over the {max_total_bytes} limit")
        targets = [(_inside(dest, rel), m) for m, rel in members]
        for target, m in targets:
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            assert src is not None  # regular files always have data
            with src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(target, 0o644)
            written.append(target)
    return written
