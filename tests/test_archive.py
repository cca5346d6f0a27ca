import io
import os
import stat
import tarfile
import zipfile

import pytest

from srstyle.data.archive import UnsafeArchiveError, safe_extract


def _tar(tmp_path, members):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"ok"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


@pytest.mark.parametrize(
    "member, message",
    [
        (_file("/etc/evil"), "absolute"),
        (_file("../evil"), r"'\.\.'"),
        (_file("ok/../../evil"), r"'\.\.'"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_special("hard", tarfile.LNKTYPE, "good.txt"), "link"),
        (_special("dev", tarfile.CHRTYPE), "device"),
        (_special("fifo", tarfile.FIFOTYPE), "device"),
    ],
)
def test_malicious_tar_refused_whole(tmp_path, member, message):
    archive = _tar(tmp_path, [_file("good.txt"), member])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, dest)
    assert not (dest / "good.txt").exists()  # nothing extracted before the refusal
    assert not (tmp_path / "evil").exists()


def test_good_tar_extracts(tmp_path):
    archive = _tar(tmp_path, [_file("d/x.txt", b"hello")])
    written = safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "x.txt").read_bytes() == b"hello"
    assert len(written) == 1


def _zip(tmp_path, entries):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize(
    "name, mode, message",
    [
        ("/abs.txt", None, "absolute"),
        ("../up.txt", None, r"'\.\.'"),
        ("C:/win.txt", None, "absolute"),
        ("lnk", stat.S_IFLNK | 0o777, "symbolic link"),
    ],
)
def test_malicious_zip_refused(tmp_path, name, mode, message):
    archive = _zip(tmp_path, [("good.txt", b"ok", None), (name, b"/etc/passwd", mode)])
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "good.txt").exists()


def test_good_zip_extracts(tmp_path):
    archive = _zip(tmp_path, [("a/b.txt", b"data", stat.S_IFREG | 0o644)])
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"data"
    assert not os.path.islink(tmp_path / "out" / "a" / "b.txt")


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(UnsafeArchiveError, match="not a readable"):
        safe_extract(junk, tmp_path / "out")
