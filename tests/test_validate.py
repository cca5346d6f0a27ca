import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srstyle.config import ValidateConfig
from srstyle.data.download import sha256_file
from srstyle.data.validate import ValidationFailed, validate
from srstyle.io import ImageError, load_rgb, write_json

RNG = np.random.default_rng(0)


def _rgb(h=80, w=96):
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _bomb_png(width=200_000, height=200_000) -> bytes:
    """A valid-looking PNG whose header declares a huge size (a decompression bomb)."""
    raw = _bytes(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def _exif_rotated_jpeg() -> bytes:
    img = _rgb(64, 120)  # stored landscape, orientation 6 = display rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    return _bytes(img, "JPEG", exif=exif.tobytes(), quality=95)


def corpus() -> dict[str, tuple[str, bytes]]:
    good = _bytes(_rgb(), "PNG")
    jpeg = _bytes(_rgb(), "JPEG", quality=90)
    png16 = Image.fromarray((RNG.integers(0, 65535, (80, 96))).astype(np.uint16))
    return {
        "good.png": ("train", good),
        "gray.png": ("val", _bytes(Image.fromarray(RNG.integers(0, 256, (70, 90), dtype=np.uint8), "L"), "PNG")),
        "exif.jpg": ("train", _exif_rotated_jpeg()),
        "empty.png": ("train", b""),
        "trunc.jpg": ("train", jpeg[: len(jpeg) // 2]),
        "trunc.png": ("train", good[: len(good) // 2]),
        "text.png": ("train", b"this is not an image\n" * 10),
        "cmyk.jpg": ("train", _bytes(_rgb().convert("CMYK"), "JPEG")),
        "deep16.png": ("train", _bytes(png16, "PNG")),
        "palette.png": ("train", _bytes(_rgb().convert("P"), "PNG")),
        "rgba.png": ("train", _bytes(_rgb().convert("RGBA"), "PNG")),
        "small.png": ("train", _bytes(_rgb(20, 30), "PNG")),
        "dup.png": ("train", good),
        "bomb.png": ("train", _bomb_png()),
    }


EXPECTED = {
    "empty.png": "decodes",
    "trunc.jpg": "decodes",
    "trunc.png": "decodes",
    "text.png": "decodes",
    "small.png": "shorter side",
    "dup.png": "unique sha256",
    "bomb.png": "width*height",
}
# Valid: the loader normalises them, and the manifest says how.
NORMALISED = {
    "cmyk.jpg": "CMYK -> RGB",
    "deep16.png": "16-bit greyscale -> 8-bit RGB",
    "palette.png": "P -> RGB: palette expanded",
    "rgba.png": "alpha composited over white (255, 255, 255)",
    "exif.jpg": "EXIF orientation 6 applied",
    "gray.png": "greyscale -> RGB",
}


@pytest.fixture()
def raw(tmp_path):
    raw = tmp_path / "raw"
    manifest = []
    for name, (split, data) in corpus().items():
        (raw / split).mkdir(parents=True, exist_ok=True)
        (raw / split / name).write_bytes(data)
        manifest.append({"file": f"{split}/{name}", "split": split})
    write_json(manifest, raw / "manifest.json")
    return raw


def test_bad_corpus_quarantined_with_reasons(raw, tmp_path):
    before = {p: sha256_file(p) for p in raw.rglob("*.*") if p.name != "manifest.json"}
    cfg = ValidateConfig(min_valid_fraction=0.1, max_pixels=10_000_000)
    summary = validate(raw, tmp_path / "validated", tmp_path / "quarantine", cfg, min_side=48)
    notes = {Path(v["file"]).name: " | ".join(v["notes"])
             for v in json.loads((tmp_path / "validated" / "manifest.json").read_text())}
    for name, words in NORMALISED.items():
        assert words in notes[name], (name, notes[name])
    assert notes["good.png"] == ""

    failed = {f["file"].split("/", 1)[1]: " | ".join(f["failed"]) for f in summary["files"]}
    assert set(failed) == set(EXPECTED)
    for name, reason in EXPECTED.items():
        assert reason in failed[name], (name, failed[name])
    assert "exif.jpg" not in failed and "good.png" not in failed and "gray.png" not in failed
    assert summary["valid"] == 7 and summary["total"] == 14 and summary["normalised"] == 6
    dup = next(f for f in summary["files"] if f["file"].endswith("dup.png"))
    assert dup["duplicate_of"] == "train/good.png"

    # Quarantined copies exist; originals are untouched; reports are written.
    for name in EXPECTED:
        assert list((tmp_path / "quarantine").rglob(name)), name
    assert {p: sha256_file(p) for p in before} == before
    assert (tmp_path / "quarantine" / "report.json").is_file()
    html = (tmp_path / "quarantine" / "report.html").read_text()
    assert "expect_column_values_to_be_in_set" in html or "values must belong" in html.lower()

    # The EXIF-rotated JPEG is oriented: stored 120x64, listed (and decoded) as 64x120.
    valid = {v["file"]: v for v in json.loads((tmp_path / "validated" / "manifest.json").read_text())}
    assert (valid["train/exif.jpg"]["width"], valid["train/exif.jpg"]["height"]) == (64, 120)
    assert load_rgb(raw / "train" / "exif.jpg").shape == (120, 64, 3)


def test_stage_fails_below_valid_fraction_but_keeps_report(raw, tmp_path):
    cfg = ValidateConfig()  # the default 0.9: half the corpus lost fails the stage
    with pytest.raises(ValidationFailed, match="7/14 images .*7 were quarantined"):
        validate(raw, tmp_path / "v", tmp_path / "q", cfg, min_side=48)
    assert (tmp_path / "q" / "report.json").is_file()


def test_allowed_modes_are_configurable(raw, tmp_path):
    cfg = ValidateConfig(min_valid_fraction=0.1, allowed_modes=["RGB", "L"])
    summary = validate(raw, tmp_path / "v", tmp_path / "q", cfg, min_side=48)
    assert summary["valid"] == 3


def test_load_rgb_errors_name_the_file(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb_png())
    with pytest.raises(ImageError, match=r"bomb.png.*(exceeds the limit|too large)"):
        load_rgb(bomb)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageError, match=r"notes.png: not an? (recognised|accepted) image"):
        load_rgb(text)
