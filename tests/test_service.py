"""The BentoML service for real: `bentoml serve` in a subprocess on 127.0.0.1, called over HTTP."""

import concurrent.futures
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from srstyle.export.onnx import export_sr_onnx
from srstyle.inference import load_sr_model, upscale_rgb
from srstyle.models import build_model
from tests.helpers import photo
from tests.test_validate import _bomb_png

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path: Path, model_dir: Path | None, port: int) -> subprocess.Popen:
    params = tmp_path / "params.yaml"
    params.write_text("serving:\n  max_pixels: 250000\n  max_request_bytes: 2000000\n  tile: 64\n")
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "SRSTYLE_PARAMS": str(params),
           "SRSTYLE_ROOT": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    if model_dir is not None:
        env["SRSTYLE_SERVE_DIR"] = str(model_dir)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "srstyle.serving.service:SRService", "--host", "127.0.0.1",
         "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def _wait(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, "bentoml serve exited"
        try:
            if httpx.post(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("service did not start")


def _stop(proc: subprocess.Popen) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    models = tmp / "models"
    export_sr_onnx(build_model("espcn", 3, channels=[8, 4]), models / "espcn_x3.onnx")
    port = _free_port()
    proc = _serve(tmp, models, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        yield url, models / "espcn_x3.onnx", tmp
    finally:
        _stop(proc)


def _png(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


def test_upscale_matches_the_onnx_model(server, tmp_path):
    url, onnx_path, _ = server
    rgb = photo(70, 150, seed=5)  # wider than one 64-px tile: the tiled path is exercised
    src = tmp_path / "in.png"
    src.write_bytes(_png(rgb))
    with bentoml.SyncHTTPClient(url) as client:
        out = client.upscale(image=src, scale=3)
        got = np.asarray(Image.open(out).convert("RGB"))
        assert client.readyz()["ready"] is True
        assert client.models()["models"]["espcn_x3"]["scale"] == 3
    expected = upscale_rgb(load_sr_model(onnx_path), rgb)
    assert got.shape == (210, 450, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


BAD = {
    "empty": (b"", "empty"),
    "text": (b"hello, not an image\n" * 5, "not a recognised image"),
    "truncated": (None, "corrupt or truncated"),
    "bomb": (_bomb_png(), "exceeds the limit"),
    "too_many_pixels": (None, "exceeds the limit"),
    "too_many_bytes": (None, "byte limit"),
    "gif": (None, "not accepted"),
}


def _bad_body(name: str) -> bytes:
    data, _ = BAD[name]
    if data is not None:
        return data
    if name == "truncated":
        full = _png(photo(40, 40, seed=1))
        return full[: len(full) // 2]
    if name == "too_many_pixels":
        return _png(np.zeros((600, 600, 3), np.uint8))
    if name == "too_many_bytes":
        return os.urandom(2_100_000)
    return _png(photo(20, 20, seed=2), "GIF")


@pytest.mark.parametrize("name", list(BAD))
def test_bad_images_get_4xx_with_a_message(server, name):
    url, _, _ = server
    r = httpx.post(f"{url}/upscale", files={"image": ("x.png", _bad_body(name))}, data={"scale": "3"}, timeout=60)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert BAD[name][1] in r.text
    assert httpx.post(f"{url}/healthz", timeout=10).status_code == 200  # still alive


@pytest.mark.parametrize("data, files, status, message", [
    ({"scale": "4"}, True, 404, "no model for scale 4"),
    ({"scale": "3", "model": "nope"}, True, 404, "unknown model"),
    ({"scale": "abc"}, True, 400, "scale"),
    ({"scale": "3"}, False, 400, "image"),
])
def test_bad_fields_get_4xx(server, data, files, status, message):
    url, _, _ = server
    kwargs = {"files": {"image": ("a.png", _png(photo(20, 20, seed=0)))}} if files else {}
    r = httpx.post(f"{url}/upscale", data=data, timeout=30, **kwargs)
    assert r.status_code == status and message in r.text


def test_concurrent_burst_has_no_errors(server):
    url, _, _ = server
    body = _png(photo(48, 48, seed=9))

    def call(_):
        with httpx.Client(timeout=120) as c:
            return c.post(f"{url}/upscale", files={"image": ("a.png", body)}, data={"scale": "3"}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(call, range(200)))
    assert codes == [200] * 200


def test_no_model_means_not_ready_but_alive(tmp_path):
    port = _free_port()
    proc = _serve(tmp_path, None, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        r = httpx.post(f"{url}/readyz", timeout=60)
        assert r.status_code == 503 and "no model is loaded" in r.text
        r = httpx.post(f"{url}/upscale", files={"image": ("a.png", _png(photo(20, 20, seed=0)))}, data={"scale": "3"}, timeout=60)
        assert r.status_code == 503  # BentoML hides 5xx messages; /readyz says why
    finally:
        _stop(proc)
