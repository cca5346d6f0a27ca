import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

import srstyle.data.benchmarks as bm
from srstyle.data.benchmarks import BenchmarkError, prepare_benchmark
from srstyle.evaluate.benchmark import markdown, published, published_key, score_dataset
from srstyle.inference import _torch_model
from srstyle.models import build_model
from tests.helpers import photo
from tests.http_server import FileServer


def _benchmark_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i, (h, w) in enumerate([(50, 63), (37, 100)]):
            png = io.BytesIO()
            Image.fromarray(photo(h, w, seed=i)).save(png, "PNG")
            info = tarfile.TarInfo(f"benchmark/Set5/HR/img{i}.png")
            info.size = len(png.getvalue())
            tf.addfile(info, io.BytesIO(png.getvalue()))
    return buf.getvalue()


def test_set5_download_extract_and_modcrop(tmp_path, monkeypatch):
    body = _benchmark_tar()
    import hashlib

    with FileServer({"/benchmark.tar": body}) as srv:
        monkeypatch.setitem(bm.BENCHMARKS, "set5", bm.BenchmarkSource(f"{srv.url}/benchmark.tar",
                                                                      hashlib.sha256(body).hexdigest(), "benchmark/Set5/HR", "test"))
        manifest = prepare_benchmark("set5", tmp_path / "sets", tmp_path / "dl", progress=False)
    assert [(m["height"], m["width"]) for m in manifest] == [(48, 60), (36, 96)]  # multiples of 12
    assert json.loads((tmp_path / "sets/set5/manifest.json").read_text())[0]["file"] == "img0.png"


def test_unknown_and_local_sets(tmp_path):
    with pytest.raises(BenchmarkError, match="unknown benchmark set"):
        prepare_benchmark("set6", tmp_path, tmp_path)
    (tmp_path / "mine").mkdir()
    Image.fromarray(photo(30, 30, seed=3)).save(tmp_path / "mine" / "a.png")
    assert prepare_benchmark("mine", tmp_path / "sets", tmp_path, local_dir=str(tmp_path / "mine"))[0]["height"] == 24


def test_scores_bicubic_and_model_rows(tmp_path):
    (tmp_path / "src").mkdir()
    for i in range(2):
        Image.fromarray(photo(48, 60, seed=i)).save(tmp_path / "src" / f"{i}.png")
    prepare_benchmark("mine", tmp_path / "sets", tmp_path, local_dir=str(tmp_path / "src"))
    bicubic = score_dataset(None, tmp_path / "sets/mine", 3, "matlab", 10**7)
    pil = score_dataset(None, tmp_path / "sets/mine", 3, "pil", 10**7)
    model = score_dataset(_torch_model(build_model("espcn", 3, channels=[8, 4]), "t"), tmp_path / "sets/mine", 3, "matlab", 10**7)
    assert bicubic["images"] == 2 and 15 < bicubic["psnr"] < 60 and bicubic["psnr"] != pil["psnr"]
    assert np.isfinite(model["psnr"])
    rows = [{"model": "bicubic", "dataset": "set5", "scale": 4, **bicubic, "published": published("set5", 4, "bicubic")}]
    text = markdown(rows)
    assert "28.42" in text and "0.8104" in text and "Lim et al." in text


def test_published_values_from_the_issue():
    assert published("set5", 4, "bicubic")["psnr"] == 28.42
    assert published("set5", 4, "srcnn")["ssim"] == 0.8628
    assert published("set5", 4, "vdsr")["psnr"] == 31.35
    assert published("set5", 4, "srresnet")["psnr"] == 32.05
    assert published("set5", 4, published_key("edsr", {"config": "baseline"}))["psnr"] == 32.09
    assert published("set5", 4, published_key("edsr", {"config": "paper"}))["psnr"] == 32.46
    assert published("embedded", 3, "bicubic") is None
