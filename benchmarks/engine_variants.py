"""Every backend/precision of one exported model, side by side: time per call and agreement with fp32.

Shared by bench_video.py (per-frame ESPCN, the video path) and bench_serving.py (whole requests).
Variants: onnxruntime fp32 / int8 (``<name>.int8.onnx`` when present), OpenVINO fp32 / bf16 / int8 when
the ``openvino`` extra is installed, and ``auto`` (what :mod:`srstyle.engine_auto` picks on this machine,
with its own cache in a temporary folder so the choice is measured now, not read from an older run).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from srstyle.config import EngineConfig
from srstyle.engine import EngineError, open_model, openvino_core, openvino_has_bf16, output_psnr, variant_path

VARIANTS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "bf16"),
            ("openvino", "int8")]


def cpu_line() -> str:
    """The CPU model and the flags that decide engine speed, for every printed figure."""
    flags = subprocess.run("grep -o 'amx_bf16\\|amx_int8\\|avx512_bf16\\|avx512_vnni\\|avx2' /proc/cpuinfo | sort -u | tr '\\n' ' '",
                           shell=True, capture_output=True, text=True).stdout.strip()
    name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{name}, {os.cpu_count()} CPUs, flags: {flags or 'none of amx/avx512_bf16/vnni/avx2'}; load {os.getloadavg()[0]:.2f}"


def runnable(fp32_path: Path) -> list[tuple[str, str]]:
    have_int8 = variant_path(fp32_path, "int8").is_file()
    out = []
    for backend, precision in VARIANTS:
        if precision == "int8" and not have_int8:
            continue
        if backend == "openvino" and (openvino_core() is None or (precision == "bf16" and not openvino_has_bf16())):
            continue
        out.append((backend, precision))
    return out


def open_variants(fp32_path: Path, base: EngineConfig, sr: bool = True) -> dict:
    """label -> engine for every runnable variant, plus ``auto`` (measured now, in a fresh cache)."""
    engines = {}
    for backend, precision in runnable(fp32_path):
        cfg = base.model_copy(update={"backend": backend, "precision": precision})
        try:
            engines[f"{backend} {precision}"] = open_model(fp32_path, cfg, sr=sr)
        except EngineError as exc:
            print(f"  {backend} {precision}: cannot run here ({exc})")
    old = os.environ.get("SRSTYLE_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="bench-auto-") as cache:
        os.environ["SRSTYLE_CACHE_DIR"] = cache
        try:
            auto = open_model(fp32_path, base.model_copy(update={"backend": "auto", "precision": "auto"}), sr=sr)
        finally:
            if old is None:
                os.environ.pop("SRSTYLE_CACHE_DIR", None)
            else:
                os.environ["SRSTYLE_CACHE_DIR"] = old
    engines[f"auto -> {auto.backend} {auto.precision}"] = auto
    return engines


def time_variants(calls: dict, repeats: int) -> dict[str, dict]:
    """Interleaved rounds (every variant once per round: load changes hit all alike); median and min ms."""
    for fn in calls.values():
        fn()
    samples: dict = {k: [] for k in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {k: {"median_ms": round(statistics.median(v) * 1e3, 2), "min_ms": round(min(v) * 1e3, 2)} for k, v in samples.items()}


def compare(fp32_path: Path, feeds: dict, base: EngineConfig, repeats: int, sr: bool = True) -> dict[str, dict]:
    """Each variant's time on ``feeds`` and its output's PSNR against onnxruntime fp32 (dB)."""
    engines = open_variants(fp32_path, base, sr)
    ref = engines["onnxruntime fp32"].run_feeds(feeds)[0]
    rows = time_variants({k: (lambda e=e: e.run_feeds(feeds)) for k, e in engines.items()}, repeats)
    base_ms = rows["onnxruntime fp32"]["median_ms"]
    for k, e in engines.items():
        rows[k]["vs_fp32_db"] = round(min(output_psnr(e.run_feeds(feeds)[0], ref), 999.0), 1)
        rows[k]["speedup"] = round(base_ms / rows[k]["median_ms"], 2)
    return rows


def print_rows(title: str, rows: dict[str, dict]) -> None:
    print(title)
    print(f"  {'backend precision':34s} {'median ms':>9s} {'min ms':>8s} {'x ort fp32':>10s} {'vs fp32':>9s}")
    for k, r in rows.items():
        print(f"  {k:34s} {r['median_ms']:9.1f} {r['min_ms']:8.1f} {r['speedup']:10.2f} {r['vs_fp32_db']:7.1f} dB")


def photo_like(c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.uniform(16, 235, (max(h // 40, 2), max(w // 40, 2), c)).astype(np.uint8)
    img = np.asarray(Image.fromarray(small.squeeze()).resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255
    return np.ascontiguousarray(img.reshape(h, w, c).transpose(2, 0, 1)[None])
