"""Issue 14 (data path) and issue 15 (deterministic data stages): hostile inputs and interruptions.

Each test fails on the code before the fix: links and special files were copied, a local folder under
data/raw was deleted before it was read, name collisions overwrote, a resumed download appended bytes of a
changed file, bombs and interrupted extractions went through.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import srstyle.data.archive as archive_mod
import srstyle.data.benchmarks as bm
from srstyle.config import DataConfig
from srstyle.data.archive import MARKER, ArchiveError, UnsafeArchiveError, extract_once, is_complete, safe_extract
from srstyle.data.download import download
from srstyle.data.fetch import FetchError, fetch, read_manifest, stage_outputs
from tests.data_http import ChangingServer
from tests.helpers import photo

REPO = Path(__file__).resolve().parents[1]


def _png(seed: int, h: int = 60, w: int = 70) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(h, w, seed)).save(buf, "PNG")
    return buf.getvalue()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _local_cfg(folder: Path, **kw) -> DataConfig:
    return DataConfig(**{"source": "local", "local_dir": str(folder), "val_fraction": 0.5, **kw})


def _user_folder(tmp_path: Path, n: int = 6) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(n):
        (folder / f"img{i}.png").write_bytes(_png(i))
    return folder


# ---------------------------------------------------------------- local source


def test_local_source_never_follows_links_out_of_the_folder(tmp_path):
    folder = _user_folder(tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"root:x:0:0:secret\n")
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "secret.png").symlink_to(secret)
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "dangling_inside.png").symlink_to(folder / "nowhere.png")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.png").write_bytes(_png(9))
    (folder / "linked_dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (folder / "sub").mkdir()
    (folder / "sub" / "alias.png").symlink_to(folder / "img0.png")  # inside the folder: followed
    (folder / ".thumbnails").mkdir()
    (folder / ".thumbnails" / "t.png").write_bytes(_png(8))  # hidden: not the user's images

    manifest = fetch(_local_cfg(folder), tmp_path / "raw", tmp_path / "dl", progress=False)

    files, skipped = read_manifest(tmp_path / "raw")
    assert files == manifest
    assert {e["path"]: e["reason"].split(":")[0] for e in skipped} == {
        "dangling.png": "symbolic link pointing outside the folder",
        "dangling_inside.png": "symbolic link to something that is not a regular file",
        "linked_dir": "symbolic link to a folder",
        "passwd.png": "symbolic link pointing outside the folder",
        "secret.png": "symbolic link pointing outside the folder",
    }
    copied = {p.read_bytes() for p in (tmp_path / "raw").rglob("*.png")}
    assert b"root:x:0:0:secret\n" not in copied and Path("/etc/passwd").read_bytes() not in copied
    assert not any(p.is_symlink() for p in (tmp_path / "raw").rglob("*"))
    assert sorted(Path(m["file"]).name for m in files) == [f"img{i}.png" for i in range(6)] + ["sub__alias.png"]
    assert all(m["origin"].startswith("local:") and "/" not in m["origin"].split(":", 1)[1].split("sub/")[-1]
               for m in files)


@pytest.mark.timeout(30)  # the old code blocked for ever reading the FIFO
def test_local_source_copies_only_regular_files(tmp_path):
    folder = _user_folder(tmp_path)
    os.mkfifo(folder / "pipe.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.png"))
    kinds = {"pipe.png", "sock.png"}
    try:
        os.mknod(folder / "dev.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
        kinds.add("dev.png")
    except PermissionError:
        pass  # not root: FIFO and socket still cover "not a regular file"
    try:
        fetch(_local_cfg(folder), tmp_path / "raw", tmp_path / "dl", progress=False)
    finally:
        sock.close()
    _, skipped = read_manifest(tmp_path / "raw")
    assert {e["path"] for e in skipped} == kinds
    assert all("not a regular file" in e["reason"] for e in skipped)
    raw_names = {p.name for p in (tmp_path / "raw").rglob("*.png")}
    assert not raw_names & kinds and len(raw_names) == 6


def test_local_dir_inside_a_stage_output_is_refused_before_anything_is_deleted(tmp_path):
    raw = tmp_path / "data" / "raw"
    inside = raw / "mine"
    inside.mkdir(parents=True)
    (inside / "a.png").write_bytes(_png(0))
    with pytest.raises(FetchError, match=r"inside .*raw.*deleted before"):
        fetch(_local_cfg(inside), raw, tmp_path / "dl", progress=False)
    assert (inside / "a.png").read_bytes() == _png(0)  # the user's image survives

    # A folder holding the output (the project's data/) is refused too: the walk would read the output.
    with pytest.raises(FetchError, match="contains .*raw"):
        fetch(_local_cfg(tmp_path / "data"), raw, tmp_path / "dl", progress=False)

    # Every output of the real dvc.yaml counts (validate and patches delete theirs too).
    outs = stage_outputs(REPO)
    assert {REPO / "data/raw", REPO / "data/validated", REPO / "data/patches", REPO / "data/models"} <= set(outs)
    validated = tmp_path / "data" / "validated" / "mine"
    validated.mkdir(parents=True)
    with pytest.raises(FetchError, match="validated"):
        fetch(_local_cfg(validated), raw, tmp_path / "dl", progress=False, protected=[tmp_path / "data/validated"])


@pytest.mark.parametrize("names", [("a__b.png", "a/b.png"), ("Photo.png", "photo.png")])
def test_flattened_name_collisions_are_refused_with_both_names(tmp_path, names):
    folder = tmp_path / "mine"
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(_png(i))
    with pytest.raises(FetchError, match="would both be stored") as err:
        fetch(_local_cfg(folder, val_fraction=0.0), tmp_path / "raw", tmp_path / "dl", progress=False)
    assert all(f"local:{n}" in str(err.value) for n in names)


def test_embedded_manifest_has_no_machine_paths(tmp_path):
    import skimage

    fetch(DataConfig(), tmp_path / "raw", tmp_path / "dl", progress=False)
    text = (tmp_path / "raw" / "manifest.json").read_text()
    assert str(tmp_path) not in text and "site-packages" not in text and sys.prefix not in text
    files, skipped = read_manifest(tmp_path / "raw")
    assert skipped == [] and f"skimage=={skimage.__version__}:data/rocket.jpg" in {m["origin"] for m in files}


# ---------------------------------------------------------------- downloads


def _partial(srv: ChangingServer, dest: Path, sha: str | None, cut: int) -> None:
    srv.cut_after = cut
    with pytest.raises(Exception, match="rerun to resume"):
        download(srv.url, dest, sha, progress=False)
    assert dest.with_name(dest.name + ".part").stat().st_size == cut


@pytest.mark.parametrize("same_size", [True, False])
def test_file_changed_between_partial_and_resume_is_refused_by_a_naive_server(tmp_path, same_size):
    old = bytes(range(256)) * 2000
    new = (bytes(reversed(range(256))) * 2000) if same_size else old[:100_000] + b"\x01" * 200_000
    dest = tmp_path / "file.bin"
    with ChangingServer(old, honour_if_range=False) as srv:
        _partial(srv, dest, None, 150_000)
        srv.change(new)
        download(srv.url, dest, None, progress=False)
    # The mixed file (old head + new tail) was refused; the result is the whole new file, fetched afresh.
    assert dest.read_bytes() == new
    assert srv.headers[-1].get("Range") is None
    assert not dest.with_name("file.bin.part").exists() and not dest.with_name("file.bin.part.json").exists()


def test_resume_sends_if_range_and_a_compliant_server_restarts(tmp_path):
    old, new = b"a" * 300_000, b"b" * 300_000
    dest = tmp_path / "file.bin"
    with ChangingServer(old) as srv:
        _partial(srv, dest, _sha(new), 100_000)
        srv.change(new)
        download(srv.url, dest, _sha(new), progress=False)
        resume = srv.headers[1]
    assert resume["Range"] == "bytes=100000-" and resume["If-Range"].startswith('"')
    assert dest.read_bytes() == new


def test_range_answered_from_the_wrong_offset_is_refused(tmp_path):
    body = bytes(range(256)) * 1000
    dest = tmp_path / "file.bin"
    with ChangingServer(body) as srv:
        _partial(srv, dest, _sha(body), 50_000)
        srv.range_start_shift = 10
        download(srv.url, dest, _sha(body), progress=False)
    assert dest.read_bytes() == body
    assert srv.headers[-1].get("Range") is None  # started over


def test_416_is_complete_only_when_the_sizes_match(tmp_path):
    old, new = b"x" * 200_000, b"y" * 120_000
    dest = tmp_path / "file.bin"
    with ChangingServer(old) as srv:
        _partial(srv, dest, None, 150_000)
        srv.change(new)  # shorter than the partial: the range is unsatisfiable
        download(srv.url, dest, None, progress=False)
    assert dest.read_bytes() == new


def test_resumed_download_records_no_first_use_checksum(tmp_path):
    body = bytes(range(256)) * 1000
    dest = tmp_path / "file.bin"
    with ChangingServer(body) as srv:
        _partial(srv, dest, None, 100_000)
        download(srv.url, dest, None, progress=False)
        assert srv.headers[-1]["Range"] == "bytes=100000-"
    assert dest.read_bytes() == body
    assert not dest.with_name("file.bin.sha256").exists()


def test_partial_without_validators_starts_over_when_nothing_is_pinned(tmp_path):
    old, new = b"o" * 200_000, b"n" * 200_000
    dest = tmp_path / "file.bin"
    with ChangingServer(old, validators=False, honour_if_range=False) as srv:
        _partial(srv, dest, None, 80_000)
        srv.change(new)
        download(srv.url, dest, None, progress=False)
        assert srv.headers[-1].get("Range") is None
    assert dest.read_bytes() == new


# ---------------------------------------------------------------- archives


def _tar_bytes(members: list[tuple[str, bytes | None]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_bomb_by_ratio_is_refused(tmp_path):
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.txt", b"ok")
        zf.writestr("zeros.png", b"\0" * (16 * 2**20))
    assert zpath.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        safe_extract(zpath, tmp_path / "out")
    tpath = tmp_path / "bomb.tgz"
    tpath.write_bytes(_tar_bytes([("zeros.png", b"\0" * (16 * 2**20))]))
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        safe_extract(tpath, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_bomb_by_member_count_is_refused(tmp_path):
    path = tmp_path / "many.tar"
    path.write_bytes(_tar_bytes([(f"f{i}.txt", b"") for i in range(1001)], mode="w"))
    with pytest.raises(UnsafeArchiveError, match="1001 members, over the limit of 1000"):
        safe_extract(path, tmp_path / "out", max_members=1000)
    assert len(safe_extract(path, tmp_path / "out", max_members=2000)) == 1001


@pytest.mark.parametrize(
    "members, message",
    [
        ([("a/x.png", b"1"), ("a/x.png", b"2")], "'a/x.png' appears twice"),
        ([("a/x.png", b"1"), ("./a/x.png", b"2")], "'a/x.png' appears twice"),
        ([("a", b"file"), ("a/x.png", b"1")], "'a' is both a file and a folder"),
        ([("a", b"file"), ("a", None)], "'a' is both a file and a folder"),
    ],
)
def test_duplicates_and_file_folder_conflicts_are_refused(tmp_path, members, message):
    path = tmp_path / "a.tgz"
    path.write_bytes(_tar_bytes(members))
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(path, tmp_path / "out")


def test_free_space_is_checked_before_extracting(tmp_path, monkeypatch):
    path = tmp_path / "a.tgz"
    path.write_bytes(_tar_bytes([("x.png", _png(0))]))
    real = archive_mod.shutil.disk_usage
    monkeypatch.setattr(archive_mod.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(ArchiveError, match="needs .* bytes but .* has 1000 free"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


_KILL_MID_EXTRACTION = textwrap.dedent(
    """
    import os, signal, sys
    import srstyle.data.archive as a
    done = []
    real = a._copy
    def copy_then_die(*args):
        real(*args)
        done.append(1)
        if len(done) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    a._copy = copy_then_die
    a.safe_extract(sys.argv[1], sys.argv[2])
    """
)


def test_extraction_killed_midway_is_never_taken_as_complete(tmp_path, monkeypatch):
    images = {f"benchmark/Set5/HR/img{i}.png": _png(i, 48, 60) for i in range(5)}
    path = tmp_path / "dl" / "benchmark.tar"
    path.parent.mkdir()
    path.write_bytes(_tar_bytes(list(images.items()), mode="w"))
    dest = tmp_path / "dl" / "benchmark.tar.extracted"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_EXTRACTION, str(path), str(dest)], env=env)
    assert proc.returncode == -signal.SIGKILL
    assert not dest.exists() and list(dest.parent.glob(".benchmark.tar.extracted.partial-*"))

    # An older-style interrupted extraction (a folder without the marker) is not trusted either.
    (dest / "benchmark/Set5/HR").mkdir(parents=True)
    (dest / "benchmark/Set5/HR/img0.png").write_bytes(images["benchmark/Set5/HR/img0.png"])
    assert not is_complete(path, dest)
    monkeypatch.setitem(bm.BENCHMARKS, "set5", bm.BenchmarkSource("http://127.0.0.1:9/benchmark.tar", _sha(path.read_bytes()),
                                                                  "benchmark/Set5/HR", "test"))
    manifest = bm.prepare_benchmark("set5", tmp_path / "sets", tmp_path / "dl", progress=False)
    assert len(manifest) == 5 and is_complete(path, dest)
    assert not list(dest.parent.glob(".benchmark.tar.extracted.partial-*"))
    assert json.loads((dest / MARKER).read_text())["archive"] == "benchmark.tar"
    # A complete extraction is reused, not redone.
    marker_time = (dest / MARKER).stat().st_mtime_ns
    extract_once(path, dest)
    assert (dest / MARKER).stat().st_mtime_ns == marker_time


# ---------------------------------------------------------------- the bad-input corpus through fetch + validate


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _rgb(seed: int, h: int = 64, w: int = 80) -> Image.Image:
    return Image.fromarray(photo(h, w, seed))


def _translucent(seed: int) -> Image.Image:
    img = _rgb(seed).convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize(img.size))
    return img


def _frames(fmt: str, n: int = 3, **kw) -> bytes:
    frames = [_rgb(i) for i in range(n)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    import struct
    import zlib

    raw = _save(Image.new("L", (1, 1)), "PNG")
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_rgb(30, 64, 120), "JPEG", exif=exif.tobytes(), quality=95)


def bad_corpus() -> dict[str, tuple[bytes, str, str]]:
    """name -> (content, outcome, words expected in the reason); outcome: valid | quarantined | skipped."""
    good = _save(_rgb(1), "PNG")
    jpeg = _save(_rgb(2), "JPEG", quality=90)
    gray16 = Image.fromarray(np.random.default_rng(3).integers(0, 65535, (64, 80)).astype(np.uint16))
    palette_t = _rgb(4).convert("P")
    return {
        "good.png": (good, "valid", ""),
        "val.png": (_save(_rgb(5), "PNG"), "valid", ""),
        "good.bmp": (_save(_rgb(6), "BMP"), "valid", ""),
        "gray.png": (_save(_rgb(7).convert("L"), "PNG"), "valid", "greyscale -> RGB"),
        "rgba.png": (_save(_rgb(8).convert("RGBA"), "PNG"), "valid", "alpha composited over white"),
        "la.png": (_save(_rgb(9).convert("LA"), "PNG"), "valid", "LA -> RGB: alpha composited"),
        "palette.png": (_save(_rgb(10).convert("P"), "PNG"), "valid", "palette expanded"),
        "palette_t.png": (_save(palette_t, "PNG", transparency=0), "valid", "transparent colour composited"),
        "cmyk.jpg": (_save(_rgb(11).convert("CMYK"), "JPEG"), "valid", "CMYK -> RGB"),
        "deep16.png": (_save(gray16, "PNG"), "valid", "16-bit greyscale"),
        "deep16.tif": (_save(gray16, "TIFF"), "valid", "16-bit greyscale"),
        "onebit.png": (_save(_rgb(12).convert("1"), "PNG"), "valid", "1-bit"),
        "rgba.webp": (_save(_translucent(13), "WEBP", lossless=True), "valid", "alpha composited"),
        "exif.jpg": (_exif_jpeg(), "valid", "EXIF orientation 6 applied"),
        "camera.jpg": (_save(_rgb(17), "MPO", save_all=True, append_images=[_rgb(18, 24, 32)]), "valid",
                       "MPO: the primary JPEG image is used, 1 extra image(s) ignored"),
        "wrong_ext.jpg": (_save(_rgb(14), "PNG"), "valid", "extension .jpg but the content is PNG"),
        "zero.png": (b"", "quarantined", "file is empty"),
        "trunc.png": (good[: len(good) // 2], "quarantined", "truncated"),
        "trunc.jpg": (jpeg[: len(jpeg) // 2], "quarantined", "truncated"),
        "text.png": (b"just some notes\n" * 20, "quarantined", "text content is not one of"),
        "page.jpg": (b"<!DOCTYPE html><html><body>404</body></html>", "quarantined", "HTML content"),
        "drawing.png": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "quarantined", "SVG content"),
        "doc.jpg": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "quarantined", "PDF content"),
        "anim.png": (_frames("GIF"), "quarantined", "GIF content"),
        "anim.webp": (_frames("WEBP"), "quarantined", "a single frame"),
        "pages.tif": (_frames("TIFF"), "quarantined", "a single frame"),
        "bomb.png": (_bomb_png(), "quarantined", "exceeds max_pixels"),
        "tiny.png": (_save(_rgb(15).resize((1, 1)), "PNG"), "quarantined", "shorter side"),
        "z_dup.png": (good, "quarantined", "unique sha256"),  # sorted after good.png: the copy
        "float.tif": (_save(Image.new("F", (80, 64), 0.5), "TIFF"), "quarantined", "mode in"),
        "int32.tif": (_save(Image.new("I", (80, 64), 70000), "TIFF"), "quarantined", "mode in"),
        "junk.png": (bytes(np.random.default_rng(16).integers(128, 256, 4000, dtype=np.uint8)), "quarantined",
                     "unknown binary content"),
        "badheader.png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "quarantined", "looks like PNG but"),
        "layers.png": (b"8BPS\x00\x01" + b"\0" * 200, "quarantined", "PSD content"),
        "clip.gif": (_frames("GIF"), "ignored", "extension '.gif' is not in data.extensions"),
        "notes.txt": (b"my photos\n", "ignored", "extension '.txt' is not in data.extensions"),
        "passwd.png": (None, "skipped", "symbolic link pointing outside the folder"),
        "fifo.png": (None, "skipped", "not a regular file"),
    }


def test_bad_input_corpus_through_fetch_and_validate(tmp_path, caplog):
    from srstyle.config import ValidateConfig
    from srstyle.data.download import sha256_file
    from srstyle.data.validate import validate

    cases = bad_corpus()
    assert len(cases) >= 25
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, (data, _, _) in cases.items():
        if data is not None:
            (folder / name).write_bytes(data)
    (folder / "passwd.png").symlink_to("/etc/passwd")
    os.mkfifo(folder / "fifo.png")
    before = {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file() and not p.is_symlink()}

    caplog.set_level("INFO")
    fetch(_local_cfg(folder, val_names=["val"]), tmp_path / "raw", tmp_path / "dl", progress=False)
    cfg = ValidateConfig(min_valid_fraction=0.1)
    summary = validate(tmp_path / "raw", tmp_path / "validated", tmp_path / "quarantine", cfg, min_side=48)

    valid = {Path(v["file"]).name: " | ".join(v["notes"])
             for v in json.loads((tmp_path / "validated" / "manifest.json").read_text())}
    quarantined = {Path(q["file"]).name: " | ".join(q["failed"]) + " | " + (q.get("error") or "")
                   for q in summary["files"]}
    skipped = {e["path"]: e["reason"] for e in summary["skipped"]}
    ignored = {e["path"]: e["reason"] for e in json.loads((tmp_path / "raw" / "manifest.json").read_text())["ignored"]}
    outcome = {**{n: ("valid", r) for n, r in valid.items()}, **{n: ("quarantined", r) for n, r in quarantined.items()},
               **{n: ("skipped", r) for n, r in skipped.items()}, **{n: ("ignored", r) for n, r in ignored.items()}}
    assert len(outcome) == len(valid) + len(quarantined) + len(skipped) + len(ignored)  # each file has one fate
    assert set(outcome) == set(cases)  # zero files lost: every input is accounted for
    for name, (_, expected, words) in cases.items():
        got, reason = outcome[name]
        assert got == expected and words in reason, (name, got, reason)
        if got == "quarantined":
            assert (tmp_path / "quarantine" / "train" / name).is_file()
    assert "Traceback" not in caplog.text
    lost = len(quarantined) + len(skipped)
    assert f"kept {len(valid)} of {len(valid) + lost} files" in caplog.text  # the log says how many were lost
    assert f"{len(quarantined)} quarantined, {len(skipped)} skipped by fetch" in caplog.text
    assert {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file() and not p.is_symlink()} == before


def test_one_file_that_breaks_the_decoder_never_aborts_the_stage(tmp_path, monkeypatch):
    import srstyle.data.validate as v
    from srstyle.config import ValidateConfig

    folder = _user_folder(tmp_path, n=12)
    fetch(_local_cfg(folder, val_names=["img0"]), tmp_path / "raw", tmp_path / "dl", progress=False)
    real = v.decode_oriented

    def explode_on_img3(img, path):
        if Path(path).name == "img3.png":
            raise RuntimeError(f"decoder bug while reading {path}")
        return real(img, path)

    monkeypatch.setattr(v, "decode_oriented", explode_on_img3)
    summary = v.validate(tmp_path / "raw", tmp_path / "v", tmp_path / "q", ValidateConfig(), min_side=48)
    assert summary["valid"] == 11 and [f["file"] for f in summary["files"]] == ["train/img3.png"]
    assert summary["files"][0]["error"] == "RuntimeError: decoder bug while reading train/img3.png"


def test_images_are_opened_with_the_allowed_formats_only(tmp_path, monkeypatch):
    import srstyle.data.validate as v
    from srstyle.config import ValidateConfig

    seen = []
    real = v.Image.open

    def spy(fp, mode="r", formats=None):
        seen.append(formats)
        return real(fp, mode, formats)

    monkeypatch.setattr(v.Image, "open", spy)
    (tmp_path / "a.png").write_bytes(_png(0))
    v.image_row(tmp_path / "a.png", "a.png", ValidateConfig(allowed_formats=["PNG", "JPEG"]))
    assert seen == [["PNG", "JPEG"]]


def test_recorded_conversions_are_what_the_loader_does(tmp_path):
    from srstyle.data.validate import BACKGROUND, CONVERSIONS
    from srstyle.io import load_rgb

    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert tuple(load_rgb(tmp_path / "a.png")[0, 0]) == BACKGROUND and "over white (255, 255, 255)" in CONVERSIONS["RGBA"]
    Image.fromarray(np.full((4, 4), 0xABCD, np.uint16)).save(tmp_path / "g.png")
    assert tuple(load_rgb(tmp_path / "g.png")[0, 0]) == (0xAB,) * 3 and "value >> 8" in CONVERSIONS["I;16"]
    cmyk = Image.new("CMYK", (4, 4), (10, 200, 30, 40))
    cmyk.save(tmp_path / "c.tif")
    assert tuple(load_rgb(tmp_path / "c.tif")[0, 0]) == cmyk.convert("RGB").getpixel((0, 0))


# ---------------------------------------------------------------- patches: streaming and kill -9


def test_patch_extraction_holds_one_decoded_image_at_a_time(tmp_path, monkeypatch):
    import gc
    import weakref

    import srstyle.data.patches as patches
    from srstyle.config import PatchesConfig
    from tests.helpers import make_corpus

    raw, validated = make_corpus(tmp_path, n_train=8, n_val=2)
    alive, peak = [0], [0]
    real = patches.load_rgb

    def counted(path, max_pixels, **kw):
        rgb = real(path, max_pixels, **kw)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(rgb, lambda: alive.__setitem__(0, alive[0] - 1))
        return rgb

    monkeypatch.setattr(patches, "load_rgb", counted)
    gc.disable()  # only reference counting frees: what the code keeps referenced is what counts
    try:
        patches.make_patches(validated, raw, tmp_path / "p", PatchesConfig(scales=[3], hr_size=24, stride=12),
                             seed=0, max_pixels=10**7, progress=False)
    finally:
        gc.enable()
    assert peak[0] <= 2  # the old code held all 8 training images before sizing the store


_KILL_MID_PATCHES = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import srstyle.data.patches as p
    from srstyle.config import PatchesConfig
    calls = []
    real = p.downscale_rgb
    def downscale_then_die(*args):
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args)
    p.downscale_rgb = downscale_then_die
    root = Path(sys.argv[1])
    cfg = PatchesConfig(scales=[2, 3], modes=["y", "rgb"], hr_size=24, stride=12, max_per_image=7, min_std=1.0)
    p.make_patches(root / "validated", root / "raw", root / "patches", cfg, seed=3, max_pixels=10**7, progress=False)
    """
)


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha(p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_kill_9_during_patch_extraction_then_rerun_equals_an_uninterrupted_run(tmp_path):
    from srstyle.config import PatchesConfig
    from srstyle.data.patches import make_patches
    from tests.helpers import make_corpus

    raw, validated = make_corpus(tmp_path, n_train=4, n_val=2)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_PATCHES, str(tmp_path)], env=env)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "patches" / "summary.json").exists()  # killed mid-way, leaving temporary stores
    assert [p for p in (tmp_path / "patches").rglob(".*")]

    cfg = PatchesConfig(scales=[2, 3], modes=["y", "rgb"], hr_size=24, stride=12, max_per_image=7, min_std=1.0)
    make_patches(validated, raw, tmp_path / "patches", cfg, seed=3, max_pixels=10**7, progress=False)
    make_patches(validated, raw, tmp_path / "clean", cfg, seed=3, max_pixels=10**7, progress=False)
    rerun, clean = _tree(tmp_path / "patches"), _tree(tmp_path / "clean")
    assert rerun == clean and len(clean) == 2 * 4 * 4 + 1  # 2 splits x 4 stores x 4 files + summary.json


# ---------------------------------------------------------------- issue 15: the same bytes in any folder


@pytest.mark.slow
def test_data_stages_give_the_same_dvc_hashes_in_any_folder(tiny_repro, tmp_path):
    """`dvc repro patches` (fetch, validate, patches) of the tiny project in two folders of different names
    and depths (the session's ``tiny_repro``, and a new project deeper down): dvc.lock records the same output
    hashes, and no output names the folder or the venv."""
    import yaml

    from tests.helpers import make_tiny_project

    env = {k: v for k, v in os.environ.items() if k not in ("SRSTYLE_ROOT", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    deeper = tmp_path / "much" / "deeper" / "clone-b"
    make_tiny_project(deeper)
    proc = subprocess.run(["dvc", "repro", "patches"], cwd=deeper, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    outs, trees = [], []
    for project in (tiny_repro[0], deeper):
        assert len(project.parts) != len(tiny_repro[0].parts if project == deeper else deeper.parts)
        lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
        outs.append({stage: lock[stage]["outs"] for stage in ("fetch", "validate", "patches")})
        trees.append({out: _tree(project / "data" / out) for out in ("raw", "validated", "quarantine", "patches")})
        text = "".join((project / "data" / f).read_text() for f in
                       ("raw/manifest.json", "validated/manifest.json", "quarantine/report.json",
                        "quarantine/gx_result.json", "quarantine/report.html"))
        assert str(project) not in text and str(project.parent) not in text and sys.prefix not in text
    assert trees[0] == trees[1]
    assert outs[0] == outs[1]
    html = (deeper / "data" / "quarantine" / "report.html").read_text()
    assert not __import__("re").search(r"<(script|link|img)\b[^>]*(src|href)=\"(https?:)?//", html)  # offline


def test_a_file_swapped_for_a_link_after_listing_is_not_followed(tmp_path, monkeypatch):
    import srstyle.data.fetch as f

    folder = _user_folder(tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    real = f._list_images

    def list_then_swap(*args):
        found = real(*args)
        (folder / "img2.png").unlink()
        (folder / "img2.png").symlink_to(secret)  # an attacker's race between listing and copying
        return found

    monkeypatch.setattr(f, "_list_images", list_then_swap)
    with pytest.raises(FetchError, match="img2.png: cannot be read"):
        fetch(_local_cfg(folder), tmp_path / "raw", tmp_path / "dl", progress=False)
    assert b"secret" not in {p.read_bytes() for p in (tmp_path / "raw").rglob("*.png")}


@pytest.mark.parametrize("suffix", [".tgz", ".zip"])
def test_truncated_archive_is_refused_with_a_clear_error(tmp_path, suffix):
    images = [(f"set/img{i}.png", _png(i)) for i in range(4)]
    if suffix == ".zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in images:
                zf.writestr(name, data)
        data = buf.getvalue()
    else:
        data = _tar_bytes(images)
    path = tmp_path / f"a{suffix}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UnsafeArchiveError, match="damaged or truncated|not a readable"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_https_presets_and_no_redirect_down_to_http():
    import urllib.request

    from srstyle.data.download import DownloadError, _NoDowngrade
    from srstyle.data.fetch import PRESETS

    assert all(p.url.startswith("https://") for p in PRESETS.values())
    assert all(b.url.startswith("https://") for b in bm.BENCHMARKS.values())
    req = urllib.request.Request("https://example.org/a.zip")
    with pytest.raises(DownloadError, match="redirected to plain http"):
        _NoDowngrade().redirect_request(req, None, 302, "Found", {}, "http://example.org/a.zip")
    assert _NoDowngrade().redirect_request(req, None, 302, "Found", {}, "https://mirror.example.org/a.zip")
