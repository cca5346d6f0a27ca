"""Throughput and latency of the BentoML `upscale` endpoint (256x256 -> 768x768, ESPCN x3), in one run:
concurrency 1 and 8, adaptive batching on (max_batch_size 8) and off (max_batch_size 1).

Starts `bentoml serve` itself on 127.0.0.1 with the ONNX model given (default: the espcn_x3 export of
`dvc repro`), sends a fixed number of requests per setting, prints requests/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(models: Path, batch: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    params = tmp / f"params_{batch}.yaml"
    params.write_text(f"serving:\n  max_batch_size: {batch}\n  max_latency_ms: 10000\n  tile: 256\n")
    port = free_port()
    env = {**os.environ, "SRSTYLE_SERVE_DIR": str(models), "SRSTYLE_PARAMS": str(params),
           "BENTOML_HOME": str(tmp / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "srstyle.serving.service:SRService", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=open(tmp / f"serve_{batch}.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.post(f"{url}/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server did not become ready; log:\n{(tmp / f'serve_{batch}.log').read_text()[-3000:]}")


def load(url: str, body: bytes, concurrency: int, requests: int) -> dict:
    def one(_):
        with httpx.Client(timeout=300) as c:
            t = time.perf_counter()
            r = c.post(f"{url}/upscale", files={"image": ("a.png", body)}, data={"scale": "3"})
            return r.status_code, time.perf_counter() - t

    one(0)  # warm-up
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    lat = np.array([r[1] for r in results]) * 1e3
    return {"rps": requests / wall, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "errors": sum(r[0] != 200 for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="data/onnx/espcn_x3/espcn_x3.onnx")
    parser.add_argument("--requests", type=int, default=48)
    args = parser.parse_args()
    rgb = np.asarray(Image.open("data/raw/val/chelsea.png").convert("RGB"))[:256, :256]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "PNG")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        models = tmp / "models"
        models.mkdir()
        (models / "espcn_x3.onnx").write_bytes(Path(args.model).read_bytes())
        for batch in (8, 1):
            proc, url = serve(models, batch, tmp)
            try:
                for conc in (1, 8):
                    r = load(url, buf.getvalue(), conc, args.requests if conc > 1 else args.requests // 2)
                    print(f"batching {'on ' if batch > 1 else 'off'} (max_batch_size {batch}), concurrency {conc}: "
                          f"{r['rps']:.1f} req/s, p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, errors {r['errors']}")
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
