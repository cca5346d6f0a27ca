"""The streaming video path on tiny generated clips: counts, sizes, duration, audio, colour, errors."""

import subprocess
import sys

import av
import numpy as np
import pytest

from srstyle.cli import main
from srstyle.color import rgb_to_y
from srstyle.config import VideoConfig
from srstyle.evaluate.metrics import psnr
from srstyle.export.onnx import export_sr_onnx
from srstyle.inference import load_sr_model, upscale_rgb
from srstyle.video import VideoError, probe, synthetic_clip, upscale_video
from tests.helpers import trained_espcn

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def espcn():
    """Trained once for the module (the ONNX export and the PyTorch fallback test share it)."""
    return trained_espcn()


@pytest.fixture(scope="module")
def assets(tmp_path_factory, espcn):
    root = tmp_path_factory.mktemp("video")
    onnx_path = export_sr_onnx(espcn, root / "espcn_x3.onnx")
    clip = synthetic_clip(root / "clip.mp4", width=64, height=48, seconds=1.0, fps=24, audio=True)
    return root, onnx_path, clip


def _first_frame(path, fmt):
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format=fmt)


def test_frame_count_size_duration_and_audio(assets, tmp_path):
    _, onnx_path, clip = assets
    src = probe(clip)
    assert src["frames"] == 24 and (src["width"], src["height"]) == (64, 48) and src["audio"] == ["aac"]
    out = tmp_path / "out.mp4"
    stats = upscale_video(load_sr_model(onnx_path), clip, out, VideoConfig(), progress=False)
    got = probe(out)
    assert got["frames"] == stats.frames == 24
    assert (got["width"], got["height"]) == (192, 144) == stats.output_size
    assert got["fps"] == pytest.approx(24.0)
    assert got["duration"] == pytest.approx(src["duration"], abs=0.05)
    assert got["audio"] == ["aac"] and stats.audio_packets > 0
    assert set(stats.stage_seconds) == {"decode", "infer", "encode"} and stats.fps > 0
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary left behind
    with av.open(str(out)) as c:  # untagged SD input: the 1080p output says BT.601, not the HD default 709
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_primaries, cc.color_range) == (6, 6, 1)


@pytest.mark.parametrize("crf, min_db", [(0, 44.0), (18, 36.0)])
def test_first_frame_equals_the_image_path(assets, tmp_path, crf, min_db):
    """Y of the video's first frame vs Y of `upscale_rgb` on the decoded first input frame.

    Differences come only from the image path's 8-bit RGB round trip of the input (swscale) and, at crf>0,
    from H.264 loss: Y PSNR >= 44 dB lossless, >= 36 dB at crf 18 (measured 39.7 dB: this noisy synthetic
    texture is hard to compress). RGB (chroma is 4:2:0 in the video,
    full-resolution in the image path) only has to agree to 28 dB.
    """
    _, onnx_path, clip = assets
    model = load_sr_model(onnx_path)
    out = tmp_path / "o.mkv"
    upscale_video(model, clip, out, VideoConfig(crf=crf), progress=False)
    expected = upscale_rgb(model, _first_frame(clip, "rgb24"))
    got_y = _first_frame(out, "yuv420p")[:144].astype(np.float64)
    assert got_y.shape == expected.shape[:2]
    assert psnr(got_y, rgb_to_y(expected)) >= min_db
    got_rgb = _first_frame(out, "rgb24").astype(np.float64)
    assert psnr(got_rgb, expected.astype(np.float64)) >= 28.0


def test_video_without_audio(assets, tmp_path):
    _, onnx_path, _ = assets
    clip = synthetic_clip(tmp_path / "mute.mkv", width=32, height=24, seconds=0.5, fps=10, audio=False)
    stats = upscale_video(load_sr_model(onnx_path), clip, tmp_path / "up.mp4", progress=False)
    assert stats.frames == 5 and stats.audio_packets == 0 and probe(tmp_path / "up.mp4")["audio"] == []


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_corrupt_video_gives_a_clear_error_and_no_output(assets, tmp_path, kind):
    _, onnx_path, clip = assets
    bad = tmp_path / "bad.mp4"
    data = clip.read_bytes()
    bad.write_bytes({"garbage": b"not a video at all\n" * 100, "truncated": data[: len(data) // 3], "empty": b""}[kind])
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match="bad.mp4"):
        upscale_video(load_sr_model(onnx_path), bad, out, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.mp4"]


def test_failure_mid_stream_leaves_no_partial_output(assets, tmp_path):
    _, onnx_path, clip = assets
    model = load_sr_model(onnx_path)
    calls = {"n": 0}
    real = model.engine.run

    def flaky(x, out=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("inference failed on frame 5")
        return real(x, out=out)

    model.engine.run = flaky
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")  # an existing file is only replaced on success
    with pytest.raises(RuntimeError, match="frame 5"):
        upscale_video(model, clip, out, VideoConfig(queue_size=2), progress=False)
    assert out.read_bytes() == b"previous result" and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_cli_video_and_its_errors(assets, tmp_path, capsys):
    _, onnx_path, clip = assets
    out = tmp_path / "cli.mp4"
    assert main(["upscale", str(clip), str(out), "--model", str(onnx_path), "--no-progress"]) == 0
    assert probe(out)["frames"] == 24 and "fps" in capsys.readouterr().out
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 50)
    proc = subprocess.run([sys.executable, "-m", "srstyle.cli", "upscale", str(bad), str(tmp_path / "o.mp4"),
                           "--model", str(onnx_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "broken.mp4" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.mp4").exists()
    with pytest.raises(SystemExit, match="must be a video file"):
        main(["upscale", str(clip), str(tmp_path / "x.png"), "--model", str(onnx_path)])


def test_pytorch_fallback_gives_the_same_video(assets, espcn, tmp_path):
    """A trainer model.pt (no export) runs through PyTorch; same frames as the onnxruntime engine."""
    from srstyle.models.files import save_model_file

    root, onnx_path, clip = assets
    pt = tmp_path / "model.pt"
    save_model_file(pt, "espcn", 3, {"channels": [16, 8]}, espcn, step=0)
    torch_model = load_sr_model(pt)
    assert torch_model.engine is None
    upscale_video(torch_model, clip, tmp_path / "t.mkv", VideoConfig(crf=0), progress=False)
    upscale_video(load_sr_model(onnx_path), clip, tmp_path / "o.mkv", VideoConfig(crf=0), progress=False)
    a = _first_frame(tmp_path / "t.mkv", "yuv420p").astype(np.int16)
    b = _first_frame(tmp_path / "o.mkv", "yuv420p").astype(np.int16)
    assert np.abs(a - b).max() <= 1
