"""The BentoML service for real: `bentoml serve` in a subprocess on 127.0.0.1, called over HTTP, every reply
compared with the prediction core's (or the raw ONNX model's) output for the same image."""

import concurrent.futures
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from srstyle.predict import SRPredictor
from tests.helpers import photo
from tests.service_helpers import STYLE, decode, encode, serve, wait_ready
from tests.test_validate import _bomb_png

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    with serve(tmp, model_dir) as s:
        wait_ready(s.url)
        yield s.url, model_dir, s.log


def _post(url, route, image: bytes, timeout=120, files=None, **data):
    return httpx.post(f"{url}/{route}", files={"image": ("a.png", image), **(files or {})},
                      data={k: str(v) for k, v in data.items()}, timeout=timeout)


def _ort(path: Path, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x[0].transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def _nchw(rgb):
    return (rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None].copy()


def test_upscale_matches_the_core_on_a_trained_model(server):
    url, models, _ = server
    rgb = photo(70, 150, seed=5)  # wider than one 64-px tile: tiles are batched and reassembled
    r = _post(url, "upscale", encode(rgb), scale=3)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    expected = SRPredictor.from_onnx(models / "sr-x3.onnx").upscale(rgb)
    got = decode(r.content)
    assert got.shape == (210, 450, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert 30 < expected.mean() < 225 and (expected == 255).mean() < 0.05  # a trained model: outputs not clipped


def test_rgb_model_matches_the_core(server):
    url, models, _ = server
    rgb = photo(40, 90, seed=7)
    r = _post(url, "upscale", encode(rgb), scale=3, model="edsr_x3")
    assert r.status_code == 200, r.text
    expected = SRPredictor.from_onnx(models / "edsr_x3.onnx").upscale(rgb)
    assert np.abs(decode(r.content).astype(int) - expected.astype(int)).max() <= 1
    assert r.headers["x-srstyle-model"] == "edsr_x3"


@pytest.mark.parametrize("fmt, media", [("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")])
def test_output_format_is_selectable(server, fmt, media):
    url, models, _ = server
    rgb = photo(30, 40, seed=1)
    r = _post(url, "upscale", encode(rgb), scale=3, format=fmt, quality=80)
    assert r.status_code == 200 and r.headers["content-type"] == media
    expected = SRPredictor.from_onnx(models / "sr-x3.onnx").upscale(rgb).astype(float)
    err = np.abs(decode(r.content).astype(float) - expected).mean()
    assert err <= (0.0 if fmt == "png" else 6.0), err


def test_fast_style_returns_the_onnx_models_output(server):
    url, models, _ = server
    rgb = photo(64, 80, seed=11)
    r = _post(url, "stylize", encode(rgb), style=STYLE)
    assert r.status_code == 200, r.text
    expected = _to_u8(_ort(models / f"style-{STYLE}.onnx", {"content": _nchw(rgb)}))
    assert np.abs(decode(r.content).astype(int) - expected.astype(int)).max() <= 1
    assert 20 < expected.mean() < 235  # fitted net: outputs in range


def test_meta_style_returns_the_onnx_models_output(server):
    url, models, _ = server
    rgb, painting = photo(48, 56, seed=12), photo(48, 48, seed=13)  # painting at the style size: no resize
    r = _post(url, "stylize_arbitrary", encode(rgb), files={"painting": ("p.png", encode(painting))})
    assert r.status_code == 200, r.text
    weights = _ort(models / "style-meta.onnx", {"style": _nchw(painting)})
    expected = _to_u8(_ort(models / "style-meta.transformer.onnx", {"content": _nchw(rgb), "weights": weights.reshape(-1)}))
    assert np.abs(decode(r.content).astype(int) - expected.astype(int)).max() <= 1


def _bad_png_bodies() -> dict[str, tuple[bytes, str]]:
    full = encode(photo(40, 40, seed=1))
    return {
        "empty": (b"", "empty"),
        "text": (b"hello, not an image\n" * 5, "text file"),
        "truncated": (full[: len(full) // 2], "truncated"),
        "bomb": (_bomb_png(), "exceeds"),
        "too_many_pixels": (encode(np.zeros((600, 600, 3), np.uint8)), "exceeds"),
        "too_many_bytes": (os.urandom(2_100_000), "byte"),
        "gif": (encode(photo(20, 20, seed=2), "GIF"), "GIF"),
    }


BAD_FIELDS = [
    ("upscale", {"scale": "4"}, None, 404, "no model for scale 4"),
    ("upscale", {"scale": "3", "model": "nope"}, None, 404, "unknown SR model"),
    ("upscale", {"scale": "4", "model": "sr-x3"}, None, 400, "is x3, not x4"),  # wrong scale for a named model
    ("upscale", {"scale": "abc"}, None, 400, "scale"),
    ("upscale", {"scale": "3", "format": "bmp"}, None, 400, "format"),
    ("upscale", {"scale": "3", "format": "jpeg", "quality": "0"}, None, 400, "quality"),
    ("stylize", {"style": "no_such_style"}, None, 404, "unknown style"),
    ("stylize_arbitrary", {}, {"painting": ("p.txt", b"just text, not a painting")}, 400, "painting"),
    ("stylize_arbitrary", {}, None, 400, "painting"),  # missing painting
]


def test_bad_inputs_all_get_4xx_with_a_message_and_no_error_traceback(server):
    url, _, log = server
    before = log.read_text()
    seen = []
    for name, (body, message) in _bad_png_bodies().items():
        for route, extra in (("upscale", {"scale": 3}), ("stylize", {"style": STYLE})):
            r = _post(url, route, body, **extra)
            seen.append((name, route, r.status_code))
            assert 400 <= r.status_code < 500 and message in r.text, (name, route, r.status_code, r.text)
        r = _post(url, "stylize_arbitrary", encode(photo(30, 30, seed=0)), files={"painting": ("p.png", body)})
        assert 400 <= r.status_code < 500 and message in r.text, (name, "painting", r.status_code, r.text)
    good = encode(photo(20, 20, seed=0))
    for route, data, files, status, message in BAD_FIELDS:
        r = _post(url, route, good, files=files, **data)
        assert r.status_code == status and message in r.text, (route, data, r.status_code, r.text)
    r = httpx.post(f"{url}/upscale", data={"scale": "3"}, timeout=30)  # no image at all
    assert r.status_code == 400 and "image" in r.text
    assert httpx.post(f"{url}/healthz", timeout=10).status_code == 200  # still alive
    time.sleep(0.5)
    new = log.read_text()[len(before):]
    assert "Traceback" not in new and "[ERROR]" not in new, new[-3000:]


def test_burst_of_different_images_each_gets_its_own_reply(server):
    """Concurrent requests with a different image each: tiles of several requests run as one batch; every
    reply must equal the core's output for *its* image (a tile returned to another request fails this)."""
    url, models, _ = server
    core = SRPredictor.from_onnx(models / "sr-x3.onnx")
    images = [photo(48 if i % 3 else 100, 48 if i % 3 else 70, seed=100 + i) for i in range(48)]
    expected = [core.upscale(im) for im in images]
    calls_before = httpx.post(f"{url}/models", json={}, timeout=10).json()["batching"]

    def call(i):
        with httpx.Client(timeout=120) as c:
            r = c.post(f"{url}/upscale", files={"image": ("a.png", encode(images[i]))}, data={"scale": "3"})
        return i, r.status_code, r.content

    for _ in range(2):
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(call, range(len(images))))
        for i, status, content in results:
            assert status == 200
            assert np.abs(decode(content).astype(int) - expected[i].astype(int)).max() <= 1, f"request {i} got another reply"
    # batches really formed (fewer model calls than inputs, across both workers' counters we can see)
    after = [httpx.post(f"{url}/models", json={}, timeout=10).json()["batching"] for _ in range(6)]
    grew = [(a["inputs"] - calls_before["inputs"], a["model_calls"] - calls_before["model_calls"]) for a in after]
    assert any(calls < inputs for inputs, calls in grew if inputs > 0), grew


def test_healthz_answers_fast_while_a_large_upscale_runs(server):
    url, _, _ = server
    big = encode(photo(480, 500, seed=3))  # 240k px input (the test server's cap), 2.16 Mpx output
    done = threading.Event()
    result = {}

    def upscale():
        # several large requests back to back: on a quiet machine one takes ~0.35 s, too short to probe during it
        result["status"] = [_post(url, "upscale", big, scale=3, timeout=300).status_code for _ in range(6)]
        done.set()

    t = threading.Thread(target=upscale)
    t.start()
    time.sleep(0.1)
    latencies = []
    with httpx.Client(timeout=5) as probe:  # one connection, as a prober (kubelet) keeps it
        while not done.is_set() and len(latencies) < 40:
            t0 = time.perf_counter()
            assert probe.post(f"{url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.05)
    t.join()
    assert result["status"] == [200] * 6 and len(latencies) >= 3, (result, latencies)
    assert max(latencies) < 0.2, latencies


def test_readyz_is_503_without_a_model_and_200_with_one(server, tmp_path):
    url, _, _ = server
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    with serve(tmp_path, None) as s:
        r = httpx.get(f"{s.url}/readyz", timeout=30)
        assert r.status_code == 503
        deadline = time.time() + 60
        while True:  # "still loading" first (each worker looks for models in the background), then "no model"
            r = _post(s.url, "upscale", encode(photo(20, 20, seed=0)), scale=3)
            assert r.status_code == 503
            if "no model is loaded" in r.text or time.time() > deadline:
                break
            assert "still loading" in r.text
            time.sleep(0.5)
        assert "no model is loaded" in r.text, r.text
        assert httpx.get(f"{s.url}/readyz", timeout=30).status_code == 503
        assert httpx.post(f"{s.url}/healthz", timeout=10).status_code == 200


def test_corrupt_onnx_in_the_folder_is_reported_not_fatal(model_dir, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "sr-x3.onnx").write_bytes((model_dir / "sr-x3.onnx").read_bytes())
    (folder / "broken.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    with serve(tmp_path, folder) as s:
        wait_ready(s.url)
        info = httpx.post(f"{s.url}/models", json={}, timeout=10).json()
        assert list(info["models"]) == ["sr-x3"]
        assert any(e.startswith("broken.onnx") for e in info["errors"]), info["errors"]
        assert _post(s.url, "upscale", encode(photo(20, 20, seed=0)), scale=3).status_code == 200
