import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from srstyle.config import DataConfig
from srstyle.data.download import DownloadError, download
from srstyle.data.fetch import fetch
from tests.http_server import FileServer


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _image_tar(names_by_folder: dict[str, list[str]]) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for folder, names in names_by_folder.items():
            for name in names:
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(png, "PNG")
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(png.getvalue())
                tf.addfile(info, io.BytesIO(png.getvalue()))
    return buf.getvalue()


def test_good_archive_downloads_and_fetches(tmp_path):
    archive = _image_tar({"set/images/train": ["a.png", "b.png"], "set/images/test": ["c.png"]})
    with FileServer({"/data.tgz": archive}) as srv:
        cfg = DataConfig(source="url", url=f"{srv.url}/data.tgz", sha256=_sha(archive), subdir="set/images",
                         train_subdir="train", val_subdir="test")
        manifest = fetch(cfg, tmp_path / "raw", tmp_path / "dl", progress=False)
    assert sorted((m["split"], m["file"]) for m in manifest) == [
        ("train", "train/a.png"), ("train", "train/b.png"), ("val", "val/c.png")]
    assert (tmp_path / "raw" / "val" / "c.png").is_file()
    assert (tmp_path / "dl" / "data.tgz").read_bytes() == archive


def test_wrong_checksum_is_refused_and_kept_aside(tmp_path):
    body = b"x" * 5000
    with FileServer({"/f.bin": body}) as srv:
        with pytest.raises(DownloadError, match="sha256 mismatch"):
            download(f"{srv.url}/f.bin", tmp_path / "f.bin", _sha(b"other"), progress=False)
    assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin.sha256-mismatch").read_bytes() == body


def test_interrupted_download_resumes_with_range(tmp_path):
    body = bytes(range(256)) * 4000  # 1 MB
    with FileServer({"/big.bin": body}) as srv:
        srv.cut_after["/big.bin"] = 300_000
        with pytest.raises(DownloadError, match="rerun to resume"):
            download(f"{srv.url}/big.bin", tmp_path / "big.bin", _sha(body), progress=False)
        part = tmp_path / "big.bin.part"
        assert part.stat().st_size == 300_000
        path = download(f"{srv.url}/big.bin", tmp_path / "big.bin", _sha(body), progress=False)
        assert srv.requests[-1] == ("/big.bin", "bytes=300000-")
    assert path.read_bytes() == body and not part.exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    body = b"abcdefgh" * 10_000
    (tmp_path / "f.bin.part").write_bytes(body[:1234])
    with FileServer({"/f.bin": body}) as srv:
        srv.ignore_range = True
        path = download(f"{srv.url}/f.bin", tmp_path / "f.bin", _sha(body), progress=False)
    assert path.read_bytes() == body


def test_missing_file_and_unpinned_checksum(tmp_path):
    with FileServer({"/ok.bin": b"hello"}) as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(f"{srv.url}/nope.bin", tmp_path / "nope.bin", None, progress=False)
        download(f"{srv.url}/ok.bin", tmp_path / "ok.bin", None, progress=False)
    assert (tmp_path / "ok.bin.sha256").read_text().split()[0] == _sha(b"hello")


def test_connection_refused_names_url(tmp_path):
    with pytest.raises(DownloadError, match="cannot connect"):
        download("http://127.0.0.1:9/x.tgz", tmp_path / "x.tgz", None, progress=False, timeout=2)
