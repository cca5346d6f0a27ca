"""``engine.backend: auto`` / ``engine.precision: auto``: measured once per machine and model, cached, logged.

The right engine depends on the machine: on an Intel Xeon with AMX, OpenVINO's bf16 ran the exported
models 3.8-5.5x faster than onnxruntime fp32, while onnxruntime int8 was 0.8-1.1x fp32; on an AMD EPYC
without AMX int8 was 1.8x. So nothing is assumed: every variant the settings allow is timed on a probe
input (photo-like, ``engine.auto_probe_size`` square), its output compared with fp32, and the fastest one
that passes every gate is used:

* a variant other than fp32 must agree with fp32 on the probe at >= ``auto_min_agreement_db`` (PSNR) and
  have an evaluation record from the export stage (``<name>.precision.json``, :mod:`srstyle.export.precision`)
  marking it usable with a PSNR drop <= ``auto_max_drop_db`` on the validation photos and on photos the
  model never saw; a variant without such a record is not considered;
* int8 must be >= ``auto_int8_min_speedup`` times faster than the best float variant;
* anything but onnxruntime fp32 must beat onnxruntime fp32 by ``auto_min_speedup`` (timing noise on a
  shared machine must not move the choice to a variant that is not really faster).

With precision given explicitly only the backend is chosen (the fastest; no gates: the user chose).

The measurements (not the decision: the gates are re-applied at every load, so changing a threshold or
re-running the export's evaluation takes effect without re-measuring) are cached as one small JSON per
(CPU, model file hashes, variants, library versions, threads, spinning) under ``SRSTYLE_CACHE_DIR``, else
``$XDG_CACHE_HOME/srstyle``, else ``~/.cache/srstyle`` (``engine/<key>.json``, written atomically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

from .config import EngineConfig
from .engine import INT8_SUFFIX, output_psnr, variant_path

log = logging.getLogger(__name__)

REFERENCE = "onnxruntime/fp32"
_MEASURE_VERSION = 1


def cache_dir() -> Path:
    root = os.environ.get("SRSTYLE_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "srstyle"


def cpu_signature() -> dict:
    """What makes timings of this machine differ from another's: the CPU model, its flags, the core count."""
    name, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key == "model name" and not name.strip():
                name = line.split(":", 1)[1].strip()
            elif key == "flags" and not flags:
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return {"cpu": name, "flags": hashlib.sha256(flags.encode()).hexdigest()[:16], "cores": os.cpu_count(),
            "machine": platform.machine(), "accel": sorted(f for f in ("amx_bf16", "amx_int8", "avx512_bf16",
                                                                       "avx512_vnni", "avx2") if f in flags.split())}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_path(path: Path | str) -> Path:
    """The export stage's precision evaluation of the model ``path``: ``<name>.precision.json`` beside it."""
    fp32 = variant_path(path, "fp32")
    return fp32.with_name(fp32.stem + ".precision.json")


def precision_record(path: Path | str) -> dict | None:
    """The variants' evaluation, or None where there is none or it belongs to other files (sizes differ)."""
    rec_file = record_path(path)
    if not rec_file.is_file():
        return None
    try:
        record = json.loads(rec_file.read_text())
        variants = record["variants"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable precision record (%s); reduced precisions are not chosen by auto", rec_file, exc)
        return None
    for precision, key in (("fp32", "fp32_bytes"), ("int8", "int8_bytes")):
        file = variant_path(path, precision)
        if key in record and file.is_file() and file.stat().st_size != record[key]:
            log.warning("%s: written for another %s (size differs); re-run the export stage", rec_file, file.name)
            return None
    return variants


def probe_feeds(model, size: int) -> dict[str, np.ndarray]:
    """A photo-like input for every graph input: smooth shapes, edges and a little grain in [0, 1] for image
    inputs (random noise would exaggerate every rounding difference), a small normal vector otherwise."""
    rng = np.random.default_rng(0)
    feeds = {}
    for name, shape in zip(model.input_names, model.input_shapes):
        if len(shape) == 4:
            c = shape[1] if isinstance(shape[1], int) else 3
            yy, xx = np.mgrid[0:size, 0:size] / size
            img = np.empty((1, c, size, size), np.float32)
            for ch in range(c):
                a, b, p = rng.uniform(2, 9, 3)
                base = 0.5 + 0.3 * np.sin(a * xx + p) * np.cos(b * yy) + 0.15 * ((xx * a + yy * b) % 1 > 0.5)
                img[0, ch] = base + rng.normal(0, 0.02, (size, size))
            feeds[name] = np.clip(img, 0, 1)
        else:
            feeds[name] = rng.normal(0, 0.1, [d if isinstance(d, int) else 1 for d in shape]).astype(np.float32)
    return feeds


def measure(engines: dict, feeds: dict, rounds: int = 4) -> dict[str, dict]:
    """Each engine's best time on ``feeds`` (interleaved rounds, minimum: robust to other jobs' bursts) and its
    output's agreement (PSNR, dB) with the reference's (onnxruntime fp32, else the first fp32 variant)."""
    outputs = {}
    for key, eng in engines.items():  # warm-up: the first call allocates and, on OpenVINO, infers shapes
        outputs[key] = eng.run_feeds(feeds)[0]
    best = {key: float("inf") for key in engines}
    for _ in range(rounds):
        for key, eng in engines.items():
            t0 = time.perf_counter()
            eng.run_feeds(feeds)
            best[key] = min(best[key], time.perf_counter() - t0)
    ref = REFERENCE if REFERENCE in outputs else next((k for k in outputs if k.endswith("/fp32")), None)
    result = {}
    for key in engines:
        agreement = None if ref is None else output_psnr(outputs[key], outputs[ref])
        result[key] = {"ms": round(best[key] * 1e3, 3),
                       "agreement_db": None if agreement is None else round(min(agreement, 999.0), 2)}
    return result


def decide(measured: dict[str, dict], record: dict | None, cfg: EngineConfig, precision_auto: bool) -> tuple[str, list[str]]:
    """The chosen ``backend/precision`` key and the reasons each other variant was not chosen."""
    notes, eligible = [], {}
    for key, m in measured.items():
        precision = key.split("/")[1]
        if precision_auto and key != REFERENCE:
            agreement = m.get("agreement_db")
            if agreement is not None and agreement < cfg.auto_min_agreement_db:
                notes.append(f"{key}: agrees with fp32 at {agreement:.1f} dB < {cfg.auto_min_agreement_db}")
                continue
            if precision != "fp32":
                why = _record_gate(key, record, cfg)
                if why:
                    notes.append(why)
                    continue
        eligible[key] = m["ms"]
    floats = [ms for k, ms in eligible.items() if not k.endswith("/int8")]
    if floats and precision_auto:
        for k in [k for k in eligible if k.endswith("/int8")]:
            if eligible[k] * cfg.auto_int8_min_speedup > min(floats):
                notes.append(f"{k}: {min(floats) / eligible[k]:.2f}x the best float variant < {cfg.auto_int8_min_speedup}x")
                del eligible[k]
    if not eligible:  # only reachable with every candidate gated: fp32 of any backend is the safe answer
        return next(k for k in measured if k.endswith("/fp32")), notes
    chosen = min(eligible, key=eligible.get)
    if REFERENCE in eligible and chosen != REFERENCE and eligible[chosen] * cfg.auto_min_speedup > eligible[REFERENCE]:
        notes.append(f"{chosen}: {eligible[REFERENCE] / eligible[chosen]:.2f}x {REFERENCE} < {cfg.auto_min_speedup}x")
        chosen = REFERENCE
    return chosen, notes


def _record_gate(key: str, record: dict | None, cfg: EngineConfig) -> str | None:
    """Why the export stage's record (its ``variants``) rules out ``key`` (``backend/precision``); None if it
    passes. An SR variant carries a PSNR ``drop_db`` against ground truth, gated by ``auto_max_drop_db``; a
    style variant has no ground truth (no ``drop_db``) and is ``usable`` by its agreement with fp32 alone."""
    rec = (record or {}).get(key.replace("/", "_"))
    if not rec:
        return f"{key}: no evaluation in the precision record (run the export stage)"
    if not rec.get("usable"):
        return f"{key}: marked unusable by the export stage's evaluation ({_evaluation(rec)})"
    if "drop_db" in rec and rec["drop_db"] > cfg.auto_max_drop_db:
        return f"{key}: evaluation drop {rec.get('drop_db')} dB > {cfg.auto_max_drop_db}"
    return None


def _evaluation(rec: dict) -> str:
    return ", ".join(f"{k} {rec[k]}" for k in ("drop_db", "agreement_db") if rec.get(k) is not None)


def _prefilter(pairs: list[tuple[str, str]], record: dict | None, cfg: EngineConfig, precision_auto: bool):
    """Variants that cannot be chosen whatever their speed (no usable evaluation) are not even measured."""
    if not precision_auto:
        return pairs, []
    kept, notes = [], []
    for backend, precision in pairs:
        key = f"{backend}/{precision}"
        if precision != "fp32":
            why = _record_gate(key, record, cfg)
            if why:
                notes.append(why)
                continue
        kept.append((backend, precision))
    return kept, notes


def _cache_key(path: Path, pairs: list[tuple[str, str]], cfg: EngineConfig) -> tuple[str, dict]:
    import onnxruntime

    versions = {"onnxruntime": onnxruntime.__version__}
    if any(b == "openvino" for b, _ in pairs):
        import openvino

        versions["openvino"] = openvino.__version__
    files = {p: _sha256(variant_path(path, p)) for p in sorted({p for _, p in pairs})}
    fields = {"v": _MEASURE_VERSION, "cpu": cpu_signature(), "files": files, "variants": [f"{b}/{p}" for b, p in pairs],
              "versions": versions, "threads": cfg.intra_op_threads, "spinning": cfg.allow_spinning,
              "probe": cfg.auto_probe_size,
              "openvino_hint": cfg.openvino_hint}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24], fields


def _read_cache(file: Path) -> dict | None:
    try:
        return json.loads(file.read_text())["measured"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def choose_engine(path: Path, pairs: list[tuple[str, str]], cfg: EngineConfig, *, sr: bool, precision_auto: bool, build):
    """Open ``path`` in the variant ``auto`` picks among ``pairs``; measure (and cache) when not cached yet."""
    from .io import write_json

    record = precision_record(path)
    pairs, skipped = _prefilter(pairs, record, cfg, precision_auto)
    if len(pairs) == 1:
        engine = build(path, *pairs[0], cfg, sr)
        engine.decision = {"chosen": f"{pairs[0][0]}/{pairs[0][1]}", "measured": None, "notes": skipped}
        return engine
    key, fields = _cache_key(path, pairs, cfg)
    file = cache_dir() / "engine" / f"{key}.json"
    measured = _read_cache(file)
    engines = {}
    source = f"cached {file}"
    if measured is None or set(measured) != {f"{b}/{p}" for b, p in pairs}:
        engines = {f"{b}/{p}": build(path, b, p, cfg, sr) for b, p in pairs}
        t0 = time.perf_counter()
        measured = measure(engines, probe_feeds(next(iter(engines.values())), cfg.auto_probe_size))
        source = f"measured in {time.perf_counter() - t0:.1f} s, cached in {file}"
        try:
            write_json({"model": path.name, **fields, "load_avg_1min": os.getloadavg()[0], "measured": measured}, file)
        except OSError as exc:  # a read-only home must not stop inference: the next start measures again
            log.warning("engine auto: cannot cache the measurement in %s (%s)", file, exc)
    chosen, notes = decide(measured, record, cfg, precision_auto)
    engine = engines.get(chosen) or build(path, *chosen.split("/"), cfg, sr)
    engines.clear()
    table = ", ".join(f"{k} {m['ms']:.2f} ms" + (f" ({m['agreement_db']:.1f} dB)" if m.get("agreement_db") is not None
                                               and k != REFERENCE else "") for k, m in measured.items())
    log.info("%s: engine auto -> %s [%s; %s]%s", path.name, chosen, table, source,
             "; " + "; ".join(skipped + notes) if skipped or notes else "")
    engine.decision = {"chosen": chosen, "measured": measured, "notes": skipped + notes}
    return engine


__all__ = ["cache_dir", "choose_engine", "cpu_signature", "decide", "measure", "precision_record", "probe_feeds",
           "record_path", "INT8_SUFFIX"]
