"""Faults at the CLI's edge (issue 14): each case fails without its fix.

Output == input refused (images, videos, stylize), output pixels bounded, --content-scale checked after
scaling, decoding restricted to the allowed formats without touching Pillow's process-wide limit, and the
bad-input corpus (tests/bad_inputs.py): every file a clean error naming it, or a normalised RGB image.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from srstyle.cli import main
from srstyle.io import load_rgb
from srstyle.predict import ImageError, SRPredictor, decode_image
from srstyle.video import synthetic_clip
from tests import bad_inputs
from tests.helpers import photo

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def models(cli_models):
    """(ESPCN x3, fast style net) ONNX files, shared with test_cli.py (tests/conftest.py); read-only."""
    return cli_models


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upscale_refuses_to_overwrite_its_input(models, tmp_path, monkeypatch):
    sr, _ = models
    src = tmp_path / "x.png"
    Image.fromarray(photo(20, 24, seed=0)).save(src)
    before = _digest(src)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.png").symlink_to(src)
    for out in (str(src), "x.png", "./x.png", str(tmp_path / "sub" / ".." / "x.png"), "link.png"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(SystemExit, match="is the input file; choose another output name"):
            main(["upscale", str(src), out, "--model", str(sr)])
    assert _digest(src) == before


def test_video_and_stylize_refuse_to_overwrite_their_input(models, tmp_path):
    sr, style = models
    clip = synthetic_clip(tmp_path / "c.mp4", width=32, height=24, seconds=0.3, fps=10, audio=False)
    before = _digest(clip)
    with pytest.raises(SystemExit, match="is the input file"):
        main(["upscale", str(clip), str(clip), "--model", str(sr), "--no-progress"])
    with pytest.raises(SystemExit, match="is the input file"):
        main(["stylize", str(clip), str(clip), "--model", str(style), "--no-progress"])
    assert _digest(clip) == before
    img = tmp_path / "p.png"
    Image.fromarray(photo(20, 24, seed=0)).save(img)
    before = _digest(img)
    with pytest.raises(SystemExit, match="is the input file"):
        main(["stylize", str(img), str(img), "--model", str(style)])
    assert _digest(img) == before
    # the library functions refuse too (not only the CLI)
    from srstyle.video import VideoError, upscale_video

    with pytest.raises(VideoError, match="is the input file"):
        upscale_video(SRPredictor.from_onnx(sr), clip, clip, progress=False)


def test_upscale_bounds_the_output_pixels(models, tmp_path):
    sr, _ = models
    src = tmp_path / "in.png"
    Image.fromarray(photo(40, 50, seed=1)).save(src)
    with pytest.raises(SystemExit, match=r"150x120 = 18000 output pixels, over the limit of 17999 \(--max-output-pixels\)"):
        main(["upscale", str(src), str(tmp_path / "o.png"), "--model", str(sr), "--max-output-pixels", "17999"])
    assert not (tmp_path / "o.png").exists()
    assert main(["upscale", str(src), str(tmp_path / "o.png"), "--model", str(sr), "--max-output-pixels", "18000"]) == 0


def test_stylize_checks_pixels_after_content_scale(models, tmp_path):
    _, style = models
    src = tmp_path / "in.png"
    Image.fromarray(photo(40, 50, seed=1)).save(src)  # 2000 pixels: under the cap as given
    with pytest.raises(SystemExit, match=r"--content-scale 2.0 makes it 100x80 = 8000 pixels, over the limit of 5000"):
        main(["stylize", str(src), str(tmp_path / "o.png"), "--model", str(style), "--content-scale", "2",
              "--max-pixels", "5000"])
    assert main(["stylize", str(src), str(tmp_path / "o.png"), "--model", str(style), "--content-scale", "0.5",
                 "--max-pixels", "5000"]) == 0


def test_decoding_never_touches_pillows_process_wide_limit(tmp_path, monkeypatch):
    """The old guard set Image.MAX_IMAGE_PIXELS = None around Image.open: another thread decoding at that
    moment had no bomb guard at all. Record the value every Image.open call sees."""
    src = tmp_path / "in.png"
    Image.fromarray(photo(40, 50, seed=1)).save(src)
    seen = []
    real_open = Image.open

    def spy(*args, **kwargs):
        seen.append(Image.MAX_IMAGE_PIXELS)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    limit = Image.MAX_IMAGE_PIXELS

    def work():
        for _ in range(20):
            decode_image(src, max_pixels=10**6)
            load_rgb(src)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 160 and set(seen) == {limit}


def test_only_allowed_formats_are_parsed(tmp_path):
    Image.fromarray(photo(20, 24, seed=0)).save(tmp_path / "a.gif")
    with pytest.raises(ImageError, match="image format not accepted .it looks like a GIF.; send one of PNG, JPEG, WEBP, BMP, TIFF"):
        decode_image(tmp_path / "a.gif")
    assert decode_image(tmp_path / "a.gif", allowed_formats=["GIF"]).shape == (20, 24, 3)
    data = (tmp_path / "a.gif").read_bytes()
    with pytest.raises(ImageError, match="^image: image format not accepted"):
        decode_image(data, allowed_formats=["PNG"])  # bytes: the message names "image", no path


def test_decode_limits_bytes_and_pixels(tmp_path):
    Image.fromarray(photo(40, 50, seed=0)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    with pytest.raises(ImageError, match=f"{len(data)} bytes is over the 100-byte limit"):
        decode_image(data, max_bytes=100)
    with pytest.raises(ImageError, match="declared size 50x40 = 2000 pixels exceeds the limit of 1999"):
        decode_image(data, max_pixels=1999)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return bad_inputs.refused(root / "r"), bad_inputs.refused_videos(root / "v"), bad_inputs.normalised(root / "n")


def test_corpus_has_at_least_25_kinds(corpus):
    refused, videos, normalised = corpus
    assert len(refused) + len(videos) + len(normalised) >= 25


def test_every_refused_file_is_a_clean_cli_error(models, corpus, tmp_path, capsys):
    sr, style = models
    refused, videos, _ = corpus
    for name, (path, fragment) in {**refused, **videos}.items():
        for argv in (["upscale", str(path), str(tmp_path / f"{name}.out.png"), "--model", str(sr)],
                     ["stylize", str(path), str(tmp_path / f"{name}.out.png"), "--model", str(style)]):
            if path.suffix == ".mp4":
                argv[2] = str(tmp_path / f"{name}.out.mp4")
                argv.append("--no-progress")
            with pytest.raises(SystemExit) as info:
                main(argv)
            message = str(info.value.code)
            assert message.startswith(f"srstyle {argv[0]}: "), (name, message)
            assert str(path) in message and fragment in message, (name, message)
            assert "Traceback" not in message
    assert not [p for p in tmp_path.iterdir()]  # nothing written, no temporaries left


def test_normalised_files_upscale_with_sensible_colours(models, corpus, tmp_path, capsys):
    sr, _ = models
    _, _, normalised = corpus
    for name, (path, (h, w)) in normalised.items():
        out = tmp_path / f"{name}.png"
        assert main(["upscale", str(path), str(out), "--model", str(sr)]) == 0, name
        assert load_rgb(out).shape == (3 * h, 3 * w, 3), name
    rgba = decode_image(normalised["rgba"][0])
    assert (rgba[:, :10] == 255).all() and (rgba[:, 12:] < 250).any()  # transparent -> white
    grey16 = decode_image(normalised["png_16bit_grey"][0])
    np.testing.assert_array_equal(grey16[..., 0], photo(30, 40, seed=5)[..., 0])  # 16 -> 8 bits, not clipped
    np.testing.assert_array_equal(decode_image(normalised["png_16bit_rgb"][0]), photo(30, 40, seed=5))
    cmyk = decode_image(normalised["cmyk_jpeg"][0]).astype(int)
    assert np.abs(cmyk - photo(30, 40, seed=5)).mean() < 12  # colours survive the CMYK round trip


def test_a_refused_file_prints_no_traceback_in_a_real_process(models, corpus, tmp_path):
    sr, _ = models
    refused, _, _ = corpus
    path, fragment = refused["header_bomb"]
    done = subprocess.run([sys.executable, "-m", "srstyle.cli", "upscale", str(path), str(tmp_path / "o.png"),
                           "--model", str(sr)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr and fragment in done.stderr
