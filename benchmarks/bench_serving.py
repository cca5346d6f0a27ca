"""Serving benchmark, one run: the in-process whole-request rate beside the BentoML service.

    python benchmarks/bench_serving.py [--sr-model x.onnx] [--style-model fast_x.onnx] [--quick]

For each case (256x256 upscaled x3 by ESPCN; 512x512 through a fast style net) it measures, on the same
machine in the same run:

* in-process: one plain loop in one process (decode PNG -> prediction core -> encode, PNG level 1, default
  engine settings: all cores for onnxruntime), requests per second;
* the service (`bentoml serve`, 2 workers) at concurrency 1 and 8, adaptive batching on (params
  serving.max_batch_size/max_latency_ms) and off (max_batch_size 1): rate, p50, p99, errors;

``--engines``: the in-process rate of each backend/precision side by side (onnxruntime fp32/int8, OpenVINO
fp32/bf16/int8, and what ``engine: auto`` picks), with each one's output PSNR against onnxruntime fp32;
``--backend``/``--precision`` set params.yaml ``engine:`` for the service runs.

then the service's c=8 rate over the in-process rate (target >= 1.5 on 2 cores), and the server's idle RSS
with SR and style models loaded. Models: the given ONNX files, else ESPCN x3 of params.yaml's size and a
Johnson net of the demo's width, exported with random weights (speed does not depend on the weights).
Prints `uptime` and the CPU flags beside the figures: other jobs on the machine slow everything down.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    from tests.helpers import photo

    return photo(h, w, seed)


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def _models(folder: Path, sr: str | None, style: str | None) -> Path:
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    if sr:
        shutil.copy(sr, folder / "sr-x3.onnx")
    else:
        import torch

        from srstyle.config import load_params
        from srstyle.export.onnx import export_sr_onnx
        from srstyle.models import build_model

        torch.manual_seed(0)
        spec = load_params(REPO / "params.yaml").models["espcn"]
        channels = spec.get("channels", [64, 32]) if isinstance(spec, dict) else [64, 32]
        export_sr_onnx(build_model("espcn", 3, channels=list(channels)), folder / "sr-x3.onnx")
    if style:
        shutil.copy(style, folder / "style-bench.onnx")
    else:
        import torch

        from srstyle.export.style_onnx import export_fast
        from srstyle.models.style.transformer_net import TransformerNet

        torch.manual_seed(0)
        export_fast(TransformerNet(channels=32).eval(), folder / "style-bench.onnx", atol=1.0, metadata={"style": "bench"})
    return folder


def in_process(kind: str, folder: Path, bodies: list[bytes], seconds: float, engine=None) -> dict:
    from srstyle.predict import SRPredictor, StylePredictor, decode_image, encode_image

    if kind == "sr":
        p = SRPredictor.from_onnx(folder / "sr-x3.onnx", engine)
        work = lambda rgb: p.upscale(rgb, tile=256)  # noqa: E731
    else:
        p = StylePredictor.from_onnx(folder / "style-bench.onnx", engine)
        work = p.stylize
    first = work(decode_image(bodies[0]))  # warm-up
    encode_image(first, "png", png_level=1)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 5:
        encode_image(work(decode_image(bodies[n % len(bodies)])), "png", png_level=1)
        n += 1
    return {"rate": n / (time.perf_counter() - t0), "n": n, "first": first, "engine": p.engine}


def engine_rows(kind: str, folder: Path, bodies: list[bytes], seconds: float) -> None:
    """In-process rate of every backend/precision, and each one's first output against onnxruntime fp32."""
    from engine_variants import runnable

    from srstyle.config import EngineConfig
    from srstyle.evaluate.metrics import psnr

    path = folder / ("sr-x3.onnx" if kind == "sr" else "style-bench.onnx")
    rows = {}
    for backend, precision in runnable(path) + [("auto", "auto")]:
        r = in_process(kind, folder, bodies, seconds, EngineConfig(backend=backend, precision=precision))
        rows[f"{backend} {precision}" + (f" -> {r['engine'].backend} {r['engine'].precision}" if backend == "auto" else "")] = r
    ref = next(iter(rows.values()))
    base = ref["rate"]
    for label, r in rows.items():
        db = psnr(r["first"], ref["first"]) if r is not ref else float("inf")
        print(f"in-process  {kind:5s} {label:34s} {r['rate']:6.2f} req/s  x{r['rate'] / base:4.2f}  "
              f"vs fp32 {min(db, 999):6.1f} dB (8-bit output)")


def _server_rss(pid: int) -> float:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except FileNotFoundError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            total += int(next(line for line in open(f"/proc/{p}/status") if line.startswith("VmRSS")).split()[1])
        except (FileNotFoundError, StopIteration):
            pass
    return total / 1024


def load(url: str, route: str, data: dict, bodies: list[bytes], concurrency: int, n: int) -> dict:
    import httpx

    local = threading.local()  # one keep-alive connection per client thread, as a real client would hold

    def call(i: int):
        client = getattr(local, "client", None) or setattr(local, "client", httpx.Client(timeout=300)) or local.client
        t0 = time.perf_counter()
        r = client.post(f"{url}/{route}", files={"image": ("a.png", bodies[i % len(bodies)])}, data=data)
        return r.status_code, time.perf_counter() - t0

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, range(concurrency * 2)))  # warm-up
        t0 = time.perf_counter()
        results = list(pool.map(call, range(n)))
        wall = time.perf_counter() - t0
    lat = sorted(s for _, s in results)
    return {"rate": n / wall, "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))],
            "errors": sum(code != 200 for code, _ in results), "n": n}


def serve(folder: Path, tmp: Path, batch: int, latency_ms: int, engine: str = ""):
    from tests.servers import free_port, wait_http

    params = tmp / f"params_{batch}.yaml"
    params.write_text(f"serving:\n  max_batch_size: {batch}\n  max_latency_ms: {latency_ms}\n  workers: 2\n{engine}")
    port = free_port()
    env = {**os.environ, "SRSTYLE_SERVE_DIR": str(folder), "SRSTYLE_PARAMS": str(params), "BENTOML_HOME": str(tmp / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(REPO / "src")}
    log = tmp / f"server_{batch}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "srstyle.serving.service:SRStyle", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/livez", proc, log)
    from tests.service_helpers import wait_ready

    wait_ready(url)
    return proc, url


def stop(proc) -> None:
    from tests.servers import stop as _stop

    _stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sr-model")
    ap.add_argument("--style-model")
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, not for figures)")
    ap.add_argument("--engines", action="store_true", help="only the in-process rate of every backend/precision")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino"], help="engine.backend of the service")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"], help="engine.precision of the service")
    args = ap.parse_args()
    from srstyle.config import ServingConfig

    default = ServingConfig()
    n1, n8, secs = (12, 40, 3.0) if args.quick else (40, 200, 15.0)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    sys.path.insert(0, str(REPO / "benchmarks"))
    from engine_variants import cpu_line

    print("machine:", cpu_line())
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_s:
        tmp = Path(tmp_s)
        folder = _models(tmp / "models", args.sr_model, args.style_model)
        cases = {"sr 256x256 x3": ("sr", "upscale", {"scale": "3"}, [_png(_photo(256, 256, s)) for s in range(8)]),
                 "style 512x512": ("style", "stylize", {"style": "bench"}, [_png(_photo(512, 512, s)) for s in range(4)])}
        if args.engines:
            for name, (kind, _, _, bodies) in cases.items():
                engine_rows(kind, folder, bodies, secs)
            print("machine:", cpu_line())
            return 0
        rows = []
        engine = f"engine:\n  backend: {args.backend}\n  precision: {args.precision}\n"
        for batch in (default.max_batch_size, 1):
            proc, url = serve(folder, tmp, batch, default.max_latency_ms, engine)
            try:
                if batch > 1:
                    print(f"server RSS idle (2 workers, SR + style loaded): {_server_rss(proc.pid):.0f} MiB")
                for name, (kind, route, data, bodies) in cases.items():
                    # the reference is measured right before the service, with the server idle: other jobs on a
                    # shared machine change both alike, so the ratio is taken side by side
                    from srstyle.config import EngineConfig

                    base = {name: in_process(kind, folder, bodies, secs, EngineConfig(backend=args.backend,
                                                                                     precision=args.precision))}
                    print(f"in-process  {name:14s}  {base[name]['rate']:6.2f} req/s  ({base[name]['n']} requests, "
                          "decode+core+PNG level 1, one process)")
                    scale = 1 if kind == "sr" else 4
                    for c, n in ((1, n1 // scale), (8, n8 // scale)):
                        r = load(url, route, data, bodies, c, max(n, 8))
                        rows.append((name, batch, c, r))
                        print(f"service     {name:14s}  batch {'on ' if batch > 1 else 'off'} c={c}  {r['rate']:6.2f} req/s  "
                              f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  p99/p50 {r['p99_ms'] / r['p50_ms']:4.2f}  "
                              f"errors {r['errors']}/{r['n']}  x{r['rate'] / base[name]['rate']:.2f} of in-process")
            finally:
                stop(proc)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
