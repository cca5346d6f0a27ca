"""Real-time 1080p video super-resolution on this CPU, in one run (ratios against references measured here).

1. The machine: fp32 matmul GFLOP/s (torch, all its threads): the roofline.
2. ESPCN x3 on a 640x360 -> 1920x1080 Y frame: ms/frame for torch eager, onnxruntime fp32 in several
   engine settings, and onnxruntime int8 (static QDQ) in several quantisation settings; GFLOP/s and the
   fraction of the roofline; int8 speed-up over fp32.
3. End to end: `srstyle upscale` on a generated 10-second 640x360 24 fps clip (H.264 + AAC), fp32 and int8:
   fps and the busy time of each stage (decode + chroma upsampling, inference, encode + mux); and
   `srstyle stylize` on the same clip (RGB frames through a fast style network, 640x360 -> 640x360).
5. ``--engines``: every backend and precision side by side (onnxruntime fp32/int8, OpenVINO fp32/bf16/int8,
   and what ``engine: auto`` picks here): ms per ESPCN 360p frame, per EDSR-demo x4 480x270 frame and per
   512x512 fast-style image with each output's PSNR against onnxruntime fp32, then the video path in each.
4. With ``--reference-src OTHER/src``: the SR video path of another srstyle source tree (e.g. the main
   branch before a change) timed beside this one, alternating runs in the same benchmark, each in a fresh
   process: the before/after ratio is measured under the same load.

    python benchmarks/bench_video.py [--model data/models/espcn_x3/model.pt] [--json out.json]
    python benchmarks/bench_video.py --video-only --reference-src /path/to/main/src --rounds 3
    python benchmarks/bench_video.py --engines [--seconds 4] [--repeats 8]

The weights do not change fp32 speed; int8 is calibrated on patches of the model's own inputs (synthetic
photos here, or the patch store with --patches), and its PSNR against fp32 on the clip's first frame is
printed so a fast-but-wrong variant is visible. Per-frame timings are taken in interleaved rounds (every
variant once per round, the matmul reference included), so a shared machine's load changes hit all alike;
medians and minima over the rounds, and the roofline fraction both ways (median/median, best/best).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_espcn import espcn_flops  # noqa: E402
from engine_variants import compare, cpu_line, photo_like, print_rows, runnable  # noqa: E402

from srstyle.config import EngineConfig, Int8Config, VideoConfig  # noqa: E402
from srstyle.engine import OrtEngine  # noqa: E402
from srstyle.export.onnx import export_sr_onnx  # noqa: E402
from srstyle.export.quantize import calibration_patches, output_psnr, quantize_sr_onnx  # noqa: E402
from srstyle.inference import load_sr_model  # noqa: E402
from srstyle.models import build_model  # noqa: E402
from srstyle.video import synthetic_clip, upscale_video  # noqa: E402


def synthetic_patches(n: int = 512, seed: int = 0) -> np.ndarray:
    """LR 32x32 luma patches of smooth random pictures, [0,1] in the studio range (as decoded video)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, 1, 32, 32), np.float32)
    for i in range(n):
        small = rng.uniform(16, 235, (6, 6)).astype(np.uint8)
        out[i, 0] = np.asarray(Image.fromarray(small).resize((32, 32), Image.Resampling.BICUBIC), np.float32) / 255
    return out


def _video_row(stats) -> dict:
    return {"frames": stats.frames, "seconds": round(stats.seconds, 2), "fps": round(stats.fps, 2),
            "stage_seconds": {k: round(v, 2) for k, v in stats.stage_seconds.items()},
            "stage_ms_per_frame": {k: round(v / stats.frames * 1e3, 1) for k, v in stats.stage_seconds.items()}}


def stylize_fps(args, clip: Path, tmp: Path, vcfg: VideoConfig, engine: EngineConfig) -> dict:
    """`srstyle stylize clip.mp4` through the core: a fast style network on every RGB frame."""
    from srstyle.predict import StylePredictor
    from srstyle.video import stylize_video

    found = sorted(Path("data/style/onnx").glob("fast_*.onnx"))
    path = Path(args.style_model) if args.style_model else (found[0] if found else None)
    label = str(path) if path else "untrained Johnson net, 32 channels (speed does not depend on weights)"
    if path is None:
        from srstyle.export.style_onnx import export_fast
        from srstyle.models.style.transformer_net import TransformerNet

        path = tmp / "fast_untrained.onnx"
        export_fast(TransformerNet().eval(), path)
    net = StylePredictor.from_onnx(path, engine)
    stats = stylize_video(lambda rgb: net.stylize(rgb), clip, tmp / "styled.mp4", vcfg, progress=False)
    return {"model": label, **_video_row(stats)}


_REF_SCRIPT = """
import json, sys
from srstyle.config import EngineConfig, VideoConfig
from srstyle.inference import load_sr_model
from srstyle.video import upscale_video
import srstyle
vcfg = VideoConfig()
sr = load_sr_model(sys.argv[1], engine=EngineConfig(backend="onnxruntime", precision="fp32", allow_spinning=vcfg.allow_spinning))
stats = upscale_video(sr, sys.argv[2], sys.argv[3], vcfg, progress=False)
print(json.dumps({"src": srstyle.__file__, "fps": stats.fps, "frames": stats.frames,
                  "stage_seconds": stats.stage_seconds}))
"""


def before_after(args, fp32_path: Path, clip: Path, tmp: Path) -> dict:
    """SR video fps of this source tree and of ``--reference-src``, alternating fresh processes."""
    import subprocess

    here = str(Path(__file__).resolve().parent.parent / "src")
    trees = {"this tree": here, "reference": str(Path(args.reference_src).resolve())}
    runs: dict = {k: [] for k in trees}
    for _ in range(args.rounds):
        for label, src in trees.items():
            env = {**os.environ, "PYTHONPATH": src}
            done = subprocess.run([sys.executable, "-c", _REF_SCRIPT, str(fp32_path), str(clip), str(tmp / "ba.mp4")],
                                  env=env, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            assert row["src"].startswith(src), (row["src"], src)
            runs[label].append(row)
    out = {label: {"src": trees[label], "fps": [round(r["fps"], 2) for r in rows],
                   "fps_median": round(statistics.median(r["fps"] for r in rows), 2)} for label, rows in runs.items()}
    out["ratio_this_over_reference"] = round(out["this tree"]["fps_median"] / out["reference"]["fps_median"], 3)
    return out


def print_before_after(ba: dict | None) -> None:
    if not ba:
        return
    for label in ("this tree", "reference"):
        print(f"SR video, {label} ({ba[label]['src']}): fps per round {ba[label]['fps']}, median {ba[label]['fps_median']}")
    print(f"  this tree / reference: {ba['ratio_this_over_reference']:.3f}x (alternating fresh processes, same load)")


def video_only(args) -> None:
    """Sections 3-4 only: SR video (fp32, int8 default config), stylize video, before/after."""
    load_start = os.getloadavg()
    torch.manual_seed(0)
    model_file = Path(args.model) if args.model else Path("data/models/espcn_x3/model.pt")
    if model_file.is_file():
        from srstyle.models.files import load_model_file

        model, weights = load_model_file(model_file).eval(), str(model_file)
    else:
        model, weights = build_model("espcn", 3).eval(), "random init (speed does not depend on weights)"
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": load_start}, "model": weights, "video": {}}
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        tmp = Path(tmp)
        fp32_path = export_sr_onnx(model, tmp / "espcn_x3.onnx")
        patches = calibration_patches(Path(args.patches), 512) if args.patches else synthetic_patches()
        int8_path = quantize_sr_onnx(fp32_path, patches, Int8Config(), tmp / "espcn_x3.int8.onnx")
        clip = synthetic_clip(tmp / "clip.mp4", 640, 360, seconds=args.seconds, fps=24, audio=True)
        vcfg = VideoConfig()
        engine = EngineConfig(backend="onnxruntime", precision="fp32", allow_spinning=vcfg.allow_spinning)
        for label, path in (("fp32", fp32_path), ("int8 (params default)", int8_path)):
            cfg = engine.model_copy(update={"precision": "int8" if path.name.endswith(".int8.onnx") else "fp32"})
            stats = upscale_video(load_sr_model(path, engine=cfg), clip, tmp / "out.mp4", vcfg, progress=False)
            results["video"][label] = _video_row(stats)
        results["video"]["stylize (fast net)"] = stylize_fps(args, clip, tmp, vcfg, engine)
        if args.reference_src:
            results["video_before_after"] = before_after(args, fp32_path, clip, tmp)
    results["machine"]["loadavg_end"] = os.getloadavg()
    flags = sorted(set(Path("/proc/cpuinfo").read_text().split()) & {"avx2", "avx512_vnni", "avx_vnni"}) \
        if Path("/proc/cpuinfo").is_file() else []
    results["machine"]["cpu_flags"] = flags
    print(f"machine: {os.cpu_count()} CPUs, flags {flags}; load average {load_start[0]:.2f} at start, "
          f"{results['machine']['loadavg_end'][0]:.2f} at end; ESPCN x3 ({weights})")
    for label, v in results["video"].items():
        split = ", ".join(f"{k} {ms:.1f} ms/frame" for k, ms in v["stage_ms_per_frame"].items())
        size = "640x360 -> 640x360" if label.startswith("stylize") else "640x360 -> 1920x1080"
        print(f"video {label}: {v['frames']} frames {size} in {v['seconds']:.1f} s = {v['fps']:.1f} fps (busy per stage: {split})")
    print_before_after(results.get("video_before_after"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def engines_section(args) -> None:
    """Section 5: every backend/precision side by side (see the module docstring)."""
    from srstyle.export.style_onnx import export_fast
    from srstyle.models.style.transformer_net import TransformerNet

    print("machine:", cpu_line())
    torch.manual_seed(0)
    model_file = Path(args.model) if args.model else Path("data/models/espcn_x3/model.pt")
    if model_file.is_file():
        from srstyle.models.files import load_model_file

        model, weights = load_model_file(model_file).eval(), str(model_file)
    else:
        model, weights = build_model("espcn", 3).eval(), "random init (speed does not depend on weights)"
    results: dict = {"machine": cpu_line(), "model": weights, "frame": {}, "video": {}}
    vcfg = VideoConfig()
    base = EngineConfig(allow_spinning=True)
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        tmp = Path(tmp)
        fp32_path = export_sr_onnx(model, tmp / "espcn_x3.onnx")
        patches = calibration_patches(Path(args.patches), 512) if args.patches else synthetic_patches()
        quantize_sr_onnx(fp32_path, patches, Int8Config(), tmp / "espcn_x3.int8.onnx")
        x = photo_like(1, 360, 640)
        rows = compare(fp32_path, {"lr": x}, base, args.repeats)
        results["frame"]["espcn x3 640x360 -> 1080p Y"] = rows
        print_rows(f"ESPCN x3 ({weights}), 640x360 -> 1920x1080 Y, per frame:", rows)
        if not args.espcn_only:
            edsr = tmp / "edsr_x4.onnx"
            export_sr_onnx(build_model("edsr", 4, config="baseline", blocks=4, channels=32, residual="bicubic").eval(), edsr)
            rows = compare(edsr, {"lr": photo_like(3, 270, 480)}, base, max(args.repeats // 2, 3))
            results["frame"]["edsr demo x4 480x270 -> 1080p RGB"] = rows
            print_rows("EDSR x4 demo (4 blocks x 32, random init), 480x270 -> 1920x1080 RGB, per frame:", rows)
            style = tmp / "fast_bench.onnx"
            export_fast(TransformerNet().eval(), style, atol=1.0)
            rows = compare(style, {"content": photo_like(3, 512, 512)}, base, max(args.repeats // 2, 3), sr=False)
            results["frame"]["fast style 512x512"] = rows
            print_rows("fast style net (32 channels, random init), 512x512, per image:", rows)
        clip = synthetic_clip(tmp / "clip.mp4", 640, 360, seconds=args.seconds, fps=24, audio=True)
        video_cfg = EngineConfig(allow_spinning=vcfg.allow_spinning)
        for backend, precision in runnable(fp32_path) + [("auto", "auto")]:
            cfg = video_cfg.model_copy(update={"backend": backend, "precision": precision})
            sr = load_sr_model(fp32_path, engine=cfg)
            stats = upscale_video(sr, clip, tmp / "out.mp4", vcfg, progress=False)
            label = f"{backend} {precision}" + (f" -> {sr.engine.backend} {sr.engine.precision}" if backend == "auto" else "")
            results["video"][label] = _video_row(stats)
        for label, v in results["video"].items():
            split = ", ".join(f"{k} {ms:.1f}" for k, ms in v["stage_ms_per_frame"].items())
            print(f"video {label:34s}: {v['frames']} frames 640x360 -> 1920x1080 in {v['seconds']:.1f} s = "
                  f"{v['fps']:5.1f} fps (busy ms/frame: {split})")
    print("machine at end:", cpu_line())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a trainer model.pt (default: data/models/espcn_x3/model.pt if present, else random ESPCN x3)")
    parser.add_argument("--patches", default=None, help="a patch store (e.g. data/patches/train/y_x3) to calibrate int8 on")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated clip")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    parser.add_argument("--video-only", action="store_true", help="only the end-to-end video figures (sections 3-4)")
    parser.add_argument("--style-model", default=None, help="a fast_<style>.onnx (default: data/style/onnx/fast_*.onnx "
                        "if present, else an untrained Johnson net: speed does not depend on weights)")
    parser.add_argument("--reference-src", default=None, help="another srstyle src/ folder whose SR video path is timed "
                        "beside this one (alternating rounds)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds for --reference-src")
    parser.add_argument("--engines", action="store_true", help="only section 5: every backend/precision side by side")
    parser.add_argument("--espcn-only", action="store_true", help="--engines without the EDSR and style rows")
    args = parser.parse_args()
    if args.video_only:
        return video_only(args)
    if args.engines:
        return engines_section(args)

    load_start = os.getloadavg()
    torch.manual_seed(0)
    model_file = Path(args.model) if args.model else Path("data/models/espcn_x3/model.pt")
    if model_file.is_file():
        from srstyle.models.files import load_model_file

        model, weights = load_model_file(model_file).eval(), str(model_file)
    else:
        model, weights = build_model("espcn", 3).eval(), "random init (speed does not depend on weights)"
    h, w, scale = 360, 640, 3
    flops = espcn_flops(model, h, w)
    x = np.random.default_rng(0).uniform(16 / 255, 235 / 255, (1, 1, h, w)).astype(np.float32)
    results: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                 "loadavg_start": load_start},
                     "model": weights, "gflop_per_frame": round(flops / 1e9, 3), "frame_ms": {}, "int8_psnr_vs_fp32": {}}
    rows: list[str] = []

    xt = torch.from_numpy(x)
    a_mm, b_mm = torch.rand(2048, 2048), torch.rand(2048, 2048)
    candidates: dict = {"matmul 2048^3": lambda: a_mm @ b_mm, "torch eager fp32": lambda: model(xt)}

    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        tmp = Path(tmp)
        fp32_path = export_sr_onnx(model, tmp / "espcn_x3.onnx")
        fp32_variants = {
            "ort fp32 (engine defaults: all opts, IO binding)": EngineConfig(),
            "ort fp32 without IO binding": EngineConfig(io_binding=False),
            "ort fp32 opt=extended (no NCHWc layout)": EngineConfig(graph_optimization="extended"),
            "ort fp32 1 thread": EngineConfig(intra_op_threads=1),
            "ort fp32 no spinning": EngineConfig(allow_spinning=False),
        }
        out = np.empty((1, 1, h * scale, w * scale), np.float32)
        engines = {}
        for name, cfg in fp32_variants.items():
            engines[name] = eng = OrtEngine(fp32_path, cfg)
            candidates[name] = (lambda e=eng: e.run(x, out=out)) if cfg.io_binding else (lambda e=eng: e.run(x))
        ref = engines["ort fp32 (engine defaults: all opts, IO binding)"].run(x).copy()

        patches = calibration_patches(Path(args.patches), 512) if args.patches else synthetic_patches()
        int8_variants = {
            "ort int8 (params default: u8s8 per-channel 7-bit, Tanh lookup)": Int8Config(),
            "ort int8 Tanh in float (no sigmoid rewrite)": Int8Config(tanh_as_sigmoid=False),
            "ort int8 u8s8 full-range weights": Int8Config(reduce_range=False),
            "ort int8 u8u8 per-channel": Int8Config(weight_type="uint8", reduce_range=False),
            "ort int8 per-tensor weights": Int8Config(per_channel=False),
            "ort int8 no quant_pre_process": Int8Config(preprocess=False),
        }
        int8_files = {}
        for i, (name, qcfg) in enumerate(int8_variants.items()):
            path = quantize_sr_onnx(fp32_path, patches, qcfg, tmp / f"v{i}.int8.onnx")
            int8_files[name] = path
            eng = OrtEngine(path)
            candidates[name] = lambda e=eng: e.run(x, out=out)
            results["int8_psnr_vs_fp32"][name] = round(output_psnr(ref, eng.run(x)), 2)
        # one thread each: the int8/fp32 ratio least disturbed by other work on a shared machine
        one = OrtEngine(int8_files["ort int8 (params default: u8s8 per-channel 7-bit, Tanh lookup)"], EngineConfig(intra_op_threads=1))
        candidates["ort int8 (params default) 1 thread"] = lambda: one.run(x, out=out)
        int8_files["ort int8 (params default) 1 thread"] = one.path
        results["int8_psnr_vs_fp32"]["ort int8 (params default) 1 thread"] = round(output_psnr(ref, one.run(x)), 2)

        # Interleaved rounds: every variant is timed once per round, so load changes on a shared machine
        # hit all of them alike; medians and minima over the rounds.
        samples: dict = {k: [] for k in candidates}
        with torch.inference_mode():
            for fn in candidates.values():
                fn()
            for _ in range(args.repeats):
                for name, fn in candidates.items():
                    t = time.perf_counter()
                    fn()
                    samples[name].append(time.perf_counter() - t)
        mm = samples.pop("matmul 2048^3")
        peak = 2 * 2048**3 / statistics.median(mm) / 1e9
        peak_best = 2 * 2048**3 / min(mm) / 1e9
        results["machine"]["matmul_gflops"] = round(peak, 1)
        results["machine"]["matmul_gflops_best"] = round(peak_best, 1)
        for name, v in samples.items():
            med, best = statistics.median(v), min(v)
            results["frame_ms"][name] = {"median": round(med * 1e3, 2), "min": round(best * 1e3, 2),
                                         "gflops": round(flops / med / 1e9, 1), "roofline": round(flops / med / 1e9 / peak, 3),
                                         "roofline_best": round(flops / best / 1e9 / peak_best, 3)}
            rows.append(name)

        # CPU time of one thread (time.thread_time): onnxruntime with intra_op_threads=1 runs every kernel on
        # the calling thread, torch with set_num_threads(1) too, so this counts the work itself and not the
        # time other processes hold the cores: the ratios least disturbed by a shared machine.
        one32 = OrtEngine(fp32_path, EngineConfig(intra_op_threads=1, allow_spinning=False))
        one8 = OrtEngine(int8_files["ort int8 (params default: u8s8 per-channel 7-bit, Tanh lookup)"],
                         EngineConfig(intra_op_threads=1, allow_spinning=False))
        threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
        cpu_fns = {"matmul 2048^3": lambda: a_mm @ b_mm, "torch eager fp32": lambda: model(xt),
                   "ort fp32": lambda: one32.run(x, out=out), "ort int8 (params default)": lambda: one8.run(x, out=out)}
        cpu: dict = {k: [] for k in cpu_fns}
        with torch.inference_mode():
            for fn in cpu_fns.values():
                fn()
            for _ in range(max(args.repeats // 2, 2)):
                for name, fn in cpu_fns.items():
                    t = time.thread_time()
                    fn()
                    cpu[name].append(time.thread_time() - t)
        torch.set_num_threads(threads_before)
        mm1 = 2 * 2048**3 / min(cpu.pop("matmul 2048^3")) / 1e9
        results["cpu_time_1_thread"] = {"matmul_gflops_per_core": round(mm1, 1)}
        for name, v in cpu.items():
            best = min(v)
            results["cpu_time_1_thread"][name] = {"ms": round(best * 1e3, 1), "gflops": round(flops / best / 1e9, 1),
                                                  "roofline": round(flops / best / 1e9 / mm1, 3)}

        # End to end on a generated clip, with the engine settings the CLI uses for video.
        clip = synthetic_clip(tmp / "clip.mp4", 640, 360, seconds=args.seconds, fps=24, audio=True)
        vcfg = VideoConfig()
        engine = EngineConfig(backend="onnxruntime", precision="fp32", allow_spinning=vcfg.allow_spinning)
        fp32_ms = min(results["frame_ms"][n]["median"] for n in results["frame_ms"] if n.startswith("ort fp32"))
        # the fastest int8 variant that is also faithful (>= 40 dB against fp32): a saturating one does not count
        int8_best = min((n for n in rows if n.startswith("ort int8") and results["int8_psnr_vs_fp32"][n] >= 40),
                        key=lambda n: results["frame_ms"][n]["median"])
        results["video"] = {}
        for label, path in (("fp32", fp32_path), (f"int8 ({int8_best})", int8_files[int8_best])):
            sr = load_sr_model(path, engine=engine.model_copy(update={"precision": "int8" if path.name.endswith(".int8.onnx") else "fp32"}))
            stats = upscale_video(sr, clip, tmp / "out.mp4", vcfg, progress=False)
            results["video"][label] = {"frames": stats.frames, "seconds": round(stats.seconds, 2), "fps": round(stats.fps, 2),
                                       "stage_seconds": {k: round(v, 2) for k, v in stats.stage_seconds.items()},
                                       "stage_ms_per_frame": {k: round(v / stats.frames * 1e3, 1) for k, v in stats.stage_seconds.items()}}
        results["video"]["stylize (fast net)"] = stylize_fps(args, clip, tmp, vcfg, engine)
        if args.reference_src:
            results["video_before_after"] = before_after(args, fp32_path, clip, tmp)
    results["machine"]["loadavg_end"] = os.getloadavg()

    torch_ms = results["frame_ms"]["torch eager fp32"]["median"]
    int8_ms = results["frame_ms"][int8_best]["median"]
    print(f"machine: {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, fp32 matmul {peak:.1f} GFLOP/s "
          f"(median; best {peak_best:.1f}); "
          f"load average {load_start[0]:.2f} at start, {results['machine']['loadavg_end'][0]:.2f} at end")
    print(f"ESPCN x3 ({weights}), 640x360 -> 1920x1080 Y frame: {flops / 1e9:.2f} GFLOP")
    print(f"  {'variant':64s} {'median ms':>9s} {'min ms':>7s} {'GFLOP/s':>8s} {'roofline':>8s} {'(best)':>6s} {'vs fp32':>8s}")
    for name in rows:
        r = results["frame_ms"][name]
        q = results["int8_psnr_vs_fp32"].get(name)
        print(f"  {name:64s} {r['median']:9.1f} {r['min']:7.1f} {r['gflops']:8.1f} {r['roofline']:8.2f} {r['roofline_best']:6.2f} "
              f"{(f'{q:.1f} dB' if q is not None else ''):>8s}")
    print(f"  onnxruntime fp32 (best) over torch eager: {torch_ms / fp32_ms:.2f}x; fastest int8 ({int8_best}) over fp32: {fp32_ms / int8_ms:.2f}x")
    for label, v in results["video"].items():
        split = ", ".join(f"{k} {ms:.1f} ms/frame" for k, ms in v["stage_ms_per_frame"].items())
        print(f"video {label}: {v['frames']} frames 640x360 -> 1920x1080 in {v['seconds']:.1f} s = {v['fps']:.1f} fps "
              f"(busy per stage: {split})")
    print_before_after(results.get("video_before_after"))
    c1 = results["cpu_time_1_thread"]
    print(f"CPU time of one thread (robust to other load): matmul {c1['matmul_gflops_per_core']:.1f} GFLOP/s per core")
    for name in ("torch eager fp32", "ort fp32", "ort int8 (params default)"):
        print(f"  {name:30s} {c1[name]['ms']:8.1f} ms/frame  {c1[name]['gflops']:6.1f} GFLOP/s  ({c1[name]['roofline']:.2f} of matmul)")
    results["int8_speedup_cpu_time"] = round(c1["ort fp32"]["ms"] / c1["ort int8 (params default)"]["ms"], 2)
    print(f"  int8 over fp32 in CPU time: {results['int8_speedup_cpu_time']:.2f}x; fp32 over torch: "
          f"{c1['torch eager fp32']['ms'] / c1['ort fp32']['ms']:.2f}x")
    fm = results["frame_ms"]
    results["int8_speedup_1_thread"] = round(fm["ort fp32 1 thread"]["median"] / fm["ort int8 (params default) 1 thread"]["median"], 2)
    print(f"  at 1 thread: int8 (params default) over fp32: {results['int8_speedup_1_thread']:.2f}x")
    best_fp32 = min((n for n in rows if n.startswith("ort fp32")), key=lambda n: results["frame_ms"][n]["median"])
    results["targets"] = {
        "fp32_roofline>=0.9": results["frame_ms"][best_fp32]["roofline"],
        "fp32_roofline>=0.9 (cpu time, 1 thread)": c1["ort fp32"]["roofline"],
        "int8_speedup>=1.5": round(fp32_ms / int8_ms, 2),
        "int8_speedup>=1.5 (cpu time, 1 thread)": results["int8_speedup_cpu_time"],
        "video_fps>=24": max(v["fps"] for k, v in results["video"].items() if not k.startswith("stylize")),
    }
    print("targets:", json.dumps(results["targets"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
