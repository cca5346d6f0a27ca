"""Streaming video through the prediction core: decode -> model -> encode, with bounded memory.

``srstyle upscale clip.mp4 out.mp4 --model espcn_x3.onnx`` (:func:`upscale_video`) and
``srstyle stylize clip.mp4 out.mp4 --style starry_night`` (:func:`stylize_video`: RGB frames through the
style network, same size) share one transcoding pipeline (:func:`_transcode`); this docstring describes
the SR one.

Colour: decoded video already *is* YCbCr. H.264/VP9/... at SD sizes is BT.601 studio-swing 4:2:0, the
same Y the models were trained on (:mod:`srstyle.color`), so the path works on the decoded ``yuv420p``
planes directly: Y (16..235, /255) goes through the model, the two half-size chroma planes are upsampled
by ``scale`` with bicubic (PIL's C resampler, one call per plane), and the planes are written straight into
the encoder's frame. No RGB round trip: converting to RGB and back would cost two full-frame colour
matrix passes at 1080p and round twice. Other pixel formats are converted to yuv420p by FFmpeg (swscale)
once, at LR size. This is the image path (:func:`srstyle.inference.upscale_rgb`) with the image's chroma
upsampling done on subsampled planes, so the first frame matches it up to rounding and codec loss.

Concurrency: three threads joined by bounded queues (``video.queue_size`` frames each) so the slowest
stage sets the pace and memory stays bounded whatever the clip length:

* decode: demux, decode, reformat to yuv420p, upsample chroma; audio packets pass through in order;
* infer: the model on Y (onnxruntime and OpenVINO both release the GIL while they compute), float -> uint8;
* encode: fill the output frame's planes, encode, mux (video and the copied audio packets).

Sharing the cores: the engine's threads (``engine.intra_op_threads``, all cores by default: inference is the
slowest stage) run beside FFmpeg's decode and encode threads, so the CLI opens the model with
``video.allow_spinning`` (false): onnxruntime's idle threads do not busy-wait and OpenVINO's are not pinned
to cores, either of which would take the time decode and encode need. ``engine: auto`` measures its choice
with the same settings (they are part of its cache key), so the video path gets the variant that is
fastest when it does not spin.

Output is written to a temporary file beside the target and renamed into place only on success; any
error removes it, so a partial video never appears under the final name.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .config import VideoConfig
from .predict.sr import SRPredictor

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi"}
_END = object()


class VideoError(ValueError):
    """A video file that cannot be read or written; the message names the file and the reason."""


@dataclass
class VideoStats:
    frames: int = 0
    audio_packets: int = 0
    seconds: float = 0.0            # wall time from opening the input to the renamed output
    fps: float = 0.0
    input_size: tuple[int, int] = (0, 0)   # (width, height)
    output_size: tuple[int, int] = (0, 0)
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "infer": 0.0, "encode": 0.0})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_video(path: Path | str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _planes(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, Cb, Cr of a yuv420p frame as (compact) uint8 arrays, skipping line padding."""
    out = []
    for plane in frame.planes:
        buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        out.append(buf[:, : plane.width].copy())
    return out[0], out[1], out[2]


def _fill(frame, planes: tuple[np.ndarray, ...]) -> None:
    for plane, data in zip(frame.planes, planes):
        dst = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        dst[:, : plane.width] = data


def upsample_chroma(plane: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic x``scale`` of one uint8 chroma plane (PIL: a=-0.5, as the image path's chroma)."""
    h, w = plane.shape
    return np.asarray(Image.fromarray(plane).resize((w * scale, h * scale), Image.Resampling.BICUBIC))


def y_to_uint8(sr: np.ndarray) -> np.ndarray:
    """Model output (any shape, [0,1] scale) -> uint8 luma, rounding half to even as the image path does."""
    np.multiply(sr, 255.0, out=sr)
    np.clip(sr, 0.0, 255.0, out=sr)
    np.rint(sr, out=sr)
    return sr.astype(np.uint8)


def _open_input(src: Path):
    import av

    if not src.is_file():
        raise VideoError(f"{src}: no such file")
    if src.stat().st_size == 0:
        raise VideoError(f"{src}: file is empty (0 bytes)")
    try:
        container = av.open(str(src), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"{src}: not a readable video file ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{src}: has no video stream")
    return container


def probe(src: Path | str) -> dict:
    """Frame count (decoded), size, rate and duration of a video file: what tests and the CLI report."""
    src = Path(src)
    container = _open_input(src)
    try:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.guessed_rate
        duration = float(container.duration / 1_000_000) if container.duration else None
        return {"frames": frames, "width": stream.codec_context.width, "height": stream.codec_context.height,
                "fps": float(rate) if rate else None, "duration": duration,
                "audio": [s.codec_context.name for s in container.streams.audio]}
    except Exception as exc:
        import av

        if isinstance(exc, av.FFmpegError):
            raise VideoError(f"{src}: corrupt video data ({exc})") from None
        raise
    finally:
        container.close()


_UNSPECIFIED, _BT601, _MPEG_RANGE = 2, 6, 1  # AVCOL_SPC/PRI/TRC_UNSPECIFIED, *_SMPTE170M, AVCOL_RANGE_MPEG


def _copy_colour_tags(src, dst, height: int) -> None:
    """The output planes are the input's planes, so they mean what the input's meant: copy its colour tags.

    An untagged SD input is BT.601 by convention (what FFmpeg assumes when converting it); an untagged
    1080p output would be read as BT.709 by players, shifting the colours, so it is tagged BT.601 explicitly.
    """
    sd = height <= 576
    for attr in ("colorspace", "color_primaries", "color_trc"):
        value = getattr(src, attr, _UNSPECIFIED)
        if value == _UNSPECIFIED and sd:
            value = _BT601
        if value != _UNSPECIFIED:
            setattr(dst, attr, value)
    dst.color_range = src.color_range or _MPEG_RANGE


class _Pipeline:
    def __init__(self, size: int):
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.q_decoded: queue.Queue = queue.Queue(size)
        self.q_inferred: queue.Queue = queue.Queue(size)

    def put(self, q: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _END

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()


@dataclass
class FrameOps:
    """What one video job does to a frame, split by thread (see the module docstring).

    ``decode``: a decoded input frame -> payload (decode thread); ``infer``: payload -> payload (inference
    thread); ``encode``: payload -> the output ``av.VideoFrame`` (encode thread); ``size``: output (w, h).
    """

    decode: Callable
    infer: Callable
    encode: Callable
    size: tuple[int, int]


def _check_paths(src: Path, dst: Path) -> None:
    from .predict.images import same_file

    if not is_video(dst):
        raise VideoError(f"{dst}: output must be a video file ({', '.join(sorted(VIDEO_SUFFIXES))})")
    if same_file(src, dst):
        raise VideoError(f"{dst}: the output is the input file; choose another output name (the input is kept)")


def _transcode(src: Path, dst: Path, cfg: VideoConfig, make_ops: Callable[[int, int], FrameOps], label: str,
               progress: bool, even: bool = True) -> VideoStats:
    """Decode ``src``, run every frame through ``make_ops(w, h)``, encode to a temp file beside ``dst`` and
    rename it into place; audio packets are copied in order."""
    import av

    stats = VideoStats()
    start = time.perf_counter()
    container = _open_input(src)
    vin = container.streams.video[0]
    vin.thread_type = "AUTO"
    w, h = vin.codec_context.width, vin.codec_context.height
    if w <= 0 or h <= 0:
        container.close()
        raise VideoError(f"{src}: video stream has no frame size (corrupt header?)")
    if even and (w % 2 or h % 2):
        container.close()
        raise VideoError(f"{src}: frame size {w}x{h} is odd; 4:2:0 video needs even width and height")
    if w * h > cfg.max_frame_pixels:
        container.close()
        raise VideoError(f"{src}: frame size {w}x{h} exceeds video.max_frame_pixels={cfg.max_frame_pixels}")
    try:
        ops = make_ops(w, h)
    except BaseException:
        container.close()
        raise
    ow, oh = ops.size
    stats.input_size, stats.output_size = (w, h), (ow, oh)
    audio_in = list(container.streams.audio)

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=f".part{dst.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the final file gets the usual mode
    output = None
    try:
        try:
            output = av.open(tmp_name, "w", format={".mkv": "matroska", ".m4v": "mp4", ".mov": "mov"}.get(dst.suffix.lower()))
            rate = vin.average_rate or vin.guessed_rate or Fraction(25)
            vout = output.add_stream(cfg.codec, rate=rate)
            vout.width, vout.height, vout.pix_fmt = ow, oh, "yuv420p"
            vout.time_base = vin.time_base
            vout.codec_context.time_base = vin.time_base
            _copy_colour_tags(vin.codec_context, vout.codec_context, h)
            if cfg.codec in ("libx264", "libx265"):
                vout.options = {"crf": str(cfg.crf), "preset": cfg.preset}
            if cfg.encoder_threads:
                vout.codec_context.thread_count = cfg.encoder_threads
            audio_map = {a.index: output.add_stream_from_template(a) for a in audio_in}
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise VideoError(f"{dst}: cannot write this video ({exc}); try an .mp4 or .mkv output") from None

        pipe = _Pipeline(cfg.queue_size)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=vin.frames or None, unit="frame", desc=f"{src.name} {label}", dynamic_ncols=True)

        def decode() -> None:
            busy = 0.0
            try:
                t = time.perf_counter()
                for packet in container.demux(vin, *audio_in):
                    if pipe.stop.is_set():
                        return
                    if packet.stream.type == "audio":
                        if packet.dts is not None:
                            busy += time.perf_counter() - t
                            if not pipe.put(pipe.q_decoded, ("audio", packet)):
                                return
                            t = time.perf_counter()
                        continue
                    for frame in packet.decode():
                        if (frame.width, frame.height) != (w, h):
                            raise VideoError(f"{src}: frame size changes mid-stream ({w}x{h} -> {frame.width}x{frame.height})")
                        item = ("video", frame.pts, frame.time_base, ops.decode(frame))
                        busy += time.perf_counter() - t
                        if not pipe.put(pipe.q_decoded, item):
                            return
                        t = time.perf_counter()
                busy += time.perf_counter() - t
                pipe.put(pipe.q_decoded, _END)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                pipe.fail(exc)
            finally:
                stats.stage_seconds["decode"] = busy

        def infer() -> None:
            busy = 0.0
            try:
                while True:
                    item = pipe.get(pipe.q_decoded)
                    if item is _END:
                        pipe.put(pipe.q_inferred, _END)
                        return
                    if item[0] == "video":
                        t = time.perf_counter()
                        item = (item[0], item[1], item[2], ops.infer(item[3]))
                        busy += time.perf_counter() - t
                    if not pipe.put(pipe.q_inferred, item):
                        return
            except BaseException as exc:  # noqa: BLE001
                pipe.fail(exc)
            finally:
                stats.stage_seconds["infer"] = busy

        threads = [threading.Thread(target=decode, name="srstyle-decode", daemon=True),
                   threading.Thread(target=infer, name="srstyle-infer", daemon=True)]
        for th in threads:
            th.start()
        busy = 0.0
        try:
            while True:
                item = pipe.get(pipe.q_inferred)
                if item is _END:
                    break
                t = time.perf_counter()
                if item[0] == "audio":
                    packet = item[1]
                    packet.stream = audio_map[packet.stream.index]
                    output.mux(packet)
                    stats.audio_packets += 1
                else:
                    _, pts, tb, payload = item
                    frame = ops.encode(payload)
                    frame.pts, frame.time_base = pts, tb
                    output.mux(vout.encode(frame))
                    stats.frames += 1
                    if bar is not None:
                        bar.update(1)
                busy += time.perf_counter() - t
            if not pipe.errors:
                t = time.perf_counter()
                output.mux(vout.encode(None))
                busy += time.perf_counter() - t
        except BaseException as exc:  # noqa: BLE001
            pipe.fail(exc)
        finally:
            pipe.stop.set()  # normal end: the workers have finished already; on error: they stop now
            for th in threads:
                th.join()
            stats.stage_seconds["encode"] = busy
            if bar is not None:
                bar.close()
        if pipe.errors:
            exc = pipe.errors[0]
            if isinstance(exc, VideoError):
                raise exc
            if isinstance(exc, av.FFmpegError):
                raise VideoError(f"{src}: corrupt or unsupported video data ({exc})") from None
            raise exc
        if stats.frames == 0:
            raise VideoError(f"{src}: no decodable video frame")
        output.close()
        output = None
        container.close()
        os.replace(tmp, dst)
    except BaseException:
        if output is not None:
            try:
                output.close()
            except Exception:  # noqa: BLE001 - the error being raised matters, not this one
                pass
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    stats.seconds = time.perf_counter() - start
    stats.fps = stats.frames / stats.seconds if stats.seconds else 0.0
    return stats


def upscale_video(model: SRPredictor, src: Path | str, dst: Path | str, cfg: VideoConfig | None = None,
                  progress: bool = True) -> VideoStats:
    """Super-resolve every frame of ``src`` into ``dst`` (Y by the model, chroma bicubic, audio copied)."""
    import av

    cfg = cfg or VideoConfig()
    src, dst = Path(src), Path(dst)
    if model.color != "y":
        raise VideoError(f"{model.source}: the video path runs Y-channel models; this one is {model.color!r}")
    _check_paths(src, dst)
    s = model.scale

    def make_ops(w: int, h: int) -> FrameOps:
        # The engine writes each frame's output into one preallocated buffer (IO binding): it is free
        # again as soon as it is converted to uint8, before the next frame is run.
        engine = getattr(model, "engine", None)
        direct = engine is not None and not model.ensemble and not (model.tile and max(w, h) > model.tile)
        out_buf = np.empty((1, 1, h * s, w * s), np.float32) if direct else None

        def decode(frame):
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            y, cb, cr = _planes(frame)
            return y, upsample_chroma(cb, s), upsample_chroma(cr, s)

        def infer(payload):
            y, cb, cr = payload
            x = np.multiply(y, np.float32(1 / 255), dtype=np.float32)[None, None]
            sr = engine.run(x, out=out_buf) if direct else model.predict(x)
            return y_to_uint8(sr)[0, 0], cb, cr

        def encode(payload):
            frame = av.VideoFrame(w * s, h * s, "yuv420p")
            _fill(frame, payload)
            return frame

        return FrameOps(decode, infer, encode, (w * s, h * s))

    return _transcode(src, dst, cfg, make_ops, f"x{s}", progress)


def stylize_video(stylize: Callable[[np.ndarray], np.ndarray], src: Path | str, dst: Path | str,
                  cfg: VideoConfig | None = None, progress: bool = True, label: str = "style") -> VideoStats:
    """Every frame of ``src`` as RGB through ``stylize`` (HxWx3 uint8 -> same size uint8) into ``dst``
    (audio copied, atomic output). The style nets see RGB (FFmpeg converts from/to the stream's YUV)."""
    import av

    cfg = cfg or VideoConfig()
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst)

    def make_ops(w: int, h: int) -> FrameOps:
        def infer(rgb: np.ndarray) -> np.ndarray:
            out = stylize(rgb)
            if out.shape != rgb.shape or out.dtype != np.uint8:
                raise VideoError(f"style model returned {out.dtype} {out.shape} for a {rgb.shape} frame")
            return out

        return FrameOps(lambda frame: frame.to_ndarray(format="rgb24"), infer,
                        lambda rgb: av.VideoFrame.from_ndarray(rgb, format="rgb24"), (w, h))

    return _transcode(src, dst, cfg, make_ops, label, progress)


def synthetic_clip(path: Path | str, width: int = 640, height: int = 360, seconds: float = 10.0, fps: int = 24,
                   audio: bool = True, seed: int = 0, crf: int = 18) -> Path:
    """Write a test clip: a textured picture panning and a moving bar (H.264 yuv420p), plus a 440 Hz AAC tone.

    Used by the tests and the benchmark so neither needs a video file from outside.
    """
    import av

    path = Path(path)
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (height // 8 + 8, (width + 4 * int(seconds * fps)) // 8 + 8, 3)).astype(np.uint8)
    canvas = np.asarray(Image.fromarray(small).resize((small.shape[1] * 8, small.shape[0] * 8), Image.Resampling.BICUBIC))
    n = max(int(round(seconds * fps)), 1)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"crf": str(crf), "preset": "veryfast"}
        a = None
        if audio:
            a = out.add_stream("aac", rate=48000)
            a.layout = "mono"
        for i in range(n):
            img = canvas[:height, 4 * i : 4 * i + width].copy()
            x = (i * 7) % max(width - 12, 1)
            img[:, x : x + 12] = (230, 40, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if a is not None:
            sr, samples = 48000, int(seconds * 48000)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / sr)).astype(np.float32)
            for k in range(0, samples, 1024):
                chunk = tone[k : k + 1024]
                frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sr, k
                out.mux(a.encode(frame))
            out.mux(a.encode(None))
    return path
