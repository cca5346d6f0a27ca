"""The div2k data preset, fetched from a server on 127.0.0.1 (never the real site): DIV2K's folder layout,
the published size checked before downloading, the hash split, the checksum recorded on first use."""

import dataclasses
import io
import zipfile

import pytest
from PIL import Image

from srstyle.config import DataConfig
from srstyle.data.download import DownloadError
from srstyle.data.fetch import PRESETS, fetch
from tests.helpers import photo
from tests.http_server import FileServer


def _div2k_zip(n: int = 10) -> bytes:
    """DIV2K_train_HR.zip's layout: DIV2K_train_HR/0001.png ... (tiny images)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(1, n + 1):
            png = io.BytesIO()
            Image.fromarray(photo(24, 30, seed=i)).save(png, format="PNG")
            zf.writestr(f"DIV2K_train_HR/{i:04d}.png", png.getvalue())
    return buf.getvalue()


def test_the_div2k_preset_names_the_eth_archive():
    p = PRESETS["div2k"]
    assert p.url == "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip"
    assert p.subdir == "DIV2K_train_HR" and p.sha256 is None and p.size_bytes == 3_530_603_713
    assert not p.train_subdir and not p.val_subdir  # one archive: a hash split of its 800 images


def test_div2k_fetched_from_a_local_server(tmp_path, monkeypatch):
    body = _div2k_zip()
    with FileServer({"/DIV2K_train_HR.zip": body}) as srv:
        local = dataclasses.replace(PRESETS["div2k"], url=f"{srv.url}/DIV2K_train_HR.zip", size_bytes=len(body))
        monkeypatch.setitem(PRESETS, "div2k", local)
        cfg = DataConfig(source="url", preset="div2k", val_fraction=0.3)
        manifest = fetch(cfg, tmp_path / "raw", tmp_path / "downloads", progress=False)
    assert sorted(m["file"].split("/")[1] for m in manifest) == [f"{i:04d}.png" for i in range(1, 11)]
    splits = {m["split"] for m in manifest}
    assert splits == {"train", "val"}
    assert all(m["origin"].endswith(f"DIV2K_train_HR.zip:{m['file'].split('/')[1]}") for m in manifest)
    assert (tmp_path / "downloads" / "DIV2K_train_HR.zip.sha256").is_file()  # trust on first use
    assert not (tmp_path / "downloads" / "DIV2K_train_HR.zip.extracted").exists()


def test_a_server_offering_another_size_is_refused_before_downloading(tmp_path, monkeypatch):
    """With the published size (3,530,603,713 bytes) a server offering something else is refused."""
    body = _div2k_zip(2)
    with FileServer({"/DIV2K_train_HR.zip": body}) as srv:
        monkeypatch.setitem(PRESETS, "div2k", dataclasses.replace(PRESETS["div2k"], url=f"{srv.url}/DIV2K_train_HR.zip"))
        with pytest.raises(DownloadError, match="published size is 3530603713"):
            fetch(DataConfig(source="url", preset="div2k"), tmp_path / "raw", tmp_path / "downloads", progress=False)
    assert not (tmp_path / "downloads" / "DIV2K_train_HR.zip").exists()
