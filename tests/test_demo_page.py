"""The demo page in a real browser: headless Chromium (Debian's `chromium`) driven over the DevTools
protocol loads /demo/ from the service, uploads a photo, runs an upscale and sees the result image."""

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request

import httpx
import pytest

from srstyle.serving.demo import DESCRIPTION, PAGE
from tests.helpers import photo
from tests.service_helpers import encode, model_subset, serve, wait_ready

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]


def test_page_is_self_contained():
    for needle in ("http://", "https://", "//cdn", "@import", "<link"):
        assert needle not in PAGE, needle
    assert "/demo/" in DESCRIPTION and "/stylize_arbitrary" in DESCRIPTION


class CDP:
    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def __call__(self, method: str, **params):
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def js(self, expression: str):
        result = await self("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise TimeoutError(f"page never satisfied: {expression}; status: {await self.js(STATUS)}")


STATUS = "document.getElementById('status').textContent"


async def _drive(ws_url: str, image_path: str) -> dict:
    import websockets

    async with websockets.connect(ws_url, max_size=None) as ws:
        cdp = CDP(ws)
        await cdp("Page.enable")
        await cdp("Runtime.enable")
        await cdp.wait_for("document.body && document.body.dataset.models === 'loaded'")
        doc = await cdp("DOM.getDocument")
        node = await cdp("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#photo")
        await cdp("DOM.setFileInputFiles", files=[image_path], nodeId=node["nodeId"])
        await cdp.js("document.getElementById('photo').dispatchEvent(new Event('change'))")
        await cdp.js("document.getElementById('run').click()")
        await cdp.wait_for("document.body.dataset.result", timeout=120)
        return {"result": await cdp.js("document.body.dataset.result"), "status": await cdp.js(STATUS),
                "out": await cdp.js("[document.getElementById('result-img').naturalWidth, document.getElementById('result-img').naturalHeight]"),
                "in": await cdp.js("[document.getElementById('input-img').naturalWidth, document.getElementById('input-img').naturalHeight]"),
                "scales": await cdp.js("document.getElementById('scale').options.length")}


def test_upscale_through_the_demo_page_in_chromium(model_dir, tmp_path):
    models = model_subset(model_dir, tmp_path / "models", ["sr-x3.onnx"])  # one SR model, no style
    image = tmp_path / "photo.png"
    image.write_bytes(encode(photo(40, 60, seed=4)))
    with serve(tmp_path / "srv", models) as s:
        wait_ready(s.url)
        assert httpx.get(f"{s.url}/demo/", timeout=10).status_code == 200
        profile = tmp_path / "profile"
        proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", f"{s.url}/demo/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.time() + 60
            while not port_file.is_file() or not port_file.read_text().strip():
                assert proc.poll() is None and time.time() < deadline, "chromium did not start"
                time.sleep(0.2)
            port = int(port_file.read_text().split()[0])
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            page = next(t for t in targets if t["type"] == "page" and "/demo/" in t["url"])
            got = asyncio.run(_drive(page["webSocketDebuggerUrl"], str(image)))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert got["result"] == "done", got
    assert got["in"] == [60, 40] and got["out"] == [180, 120], got
    assert got["scales"] == 1 and "Done in" in got["status"], got
