"""A corpus of awkward and hostile image/video files, built on the fly (nothing downloaded).

``refused()``: files every image entry point must refuse with a clear error; ``normalised()``: unusual
but valid images that decode to RGB (alpha over white, CMYK/16-bit/palette/1-bit converted, EXIF applied).
Each builder writes one file into ``folder`` and returns its path.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import photo


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def header_bomb_png(w: int = 100_000, h: int = 100_000) -> bytes:
    """A valid PNG header declaring w x h pixels with one tiny IDAT: a decompression-bomb probe."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b"")


def _frames(n: int = 3) -> list[Image.Image]:
    return [Image.fromarray(photo(24, 32, seed=i)) for i in range(n)]


def refused(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a fragment the error message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    good_png = _png_bytes(Image.fromarray(photo(40, 50, seed=0)))
    jpg = io.BytesIO()
    Image.fromarray(photo(40, 50, seed=0)).save(jpg, format="JPEG", quality=90)
    cases: dict[str, tuple[str, bytes | None, str]] = {
        "zero_bytes": ("zero.png", b"", "file is empty"),
        "truncated_png": ("trunc.png", good_png[: len(good_png) // 2], "corrupt or truncated"),
        "truncated_jpeg": ("trunc.jpg", jpg.getvalue()[: len(jpg.getvalue()) // 2], "corrupt or truncated"),
        "text_file": ("notes.png", b"hello, this is not an image\n" * 20, "looks like a text file"),
        "html_page": ("page.png", b"<!DOCTYPE html><html><body>hi</body></html>", "looks like an HTML page"),
        "svg": ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
                "looks like an SVG/XML document"),
        "pdf": ("doc.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "looks like a PDF document"),
        "random_bytes": ("noise.jpg", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
                         "not a recognised image"),
        "header_bomb": ("bomb.png", header_bomb_png(), "exceeds the limit of 40000000 pixels"),
        "bomb_under_pillow_limit": ("bomb2.png", header_bomb_png(9000, 9000), "exceeds the limit"),
        "zip_archive": ("archive.png", b"PK\x03\x04" + b"\x00" * 100, "looks like a ZIP archive"),
    }
    out = {}
    for name, (file, data, msg) in cases.items():
        (folder / file).write_bytes(data)
        out[name] = (folder / file, msg)
    frames = _frames()
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["gif_animated"] = (folder / "anim.gif", "image format not accepted (it looks like a GIF)")
    frames[0].save(folder / "still.gif")
    out["gif_still"] = (folder / "still.gif", "looks like a GIF")
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    out["webp_animated"] = (folder / "anim.webp", "has 3 frames")
    frames[0].save(folder / "pages.tiff", save_all=True, append_images=frames[1:])
    out["tiff_multipage"] = (folder / "pages.tiff", "has 3 frames")
    frames[0].save(folder / "img.ppm")
    out["ppm_not_allowed"] = (folder / "img.ppm", "image format not accepted (it looks like a PNM")
    frames[0].save(folder / "icon.ico")
    out["ico_not_allowed"] = (folder / "icon.ico", "looks like an ICO icon")
    (folder / "a_folder.png").mkdir(exist_ok=True)
    out["directory"] = (folder / "a_folder.png", "not a regular file")
    out["missing"] = (folder / "missing.png", "no such file")
    return out


def refused_videos(folder: Path) -> dict[str, tuple[Path, str]]:
    from srstyle.video import synthetic_clip

    folder.mkdir(parents=True, exist_ok=True)
    clip = synthetic_clip(folder / "ok.mp4", width=32, height=24, seconds=0.5, fps=8, audio=False)
    data = clip.read_bytes()
    (folder / "trunc.mp4").write_bytes(data[: len(data) // 3])
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "text.mp4").write_bytes(b"not a video at all\n" * 50)
    return {"video_truncated": (folder / "trunc.mp4", "trunc.mp4"),
            "video_zero_bytes": (folder / "zero.mp4", "file is empty"),
            "video_text": (folder / "text.mp4", "not a readable video file")}


def normalised(folder: Path) -> dict[str, tuple[Path, tuple[int, int]]]:
    """name -> (file, expected decoded (height, width))."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = photo(30, 40, seed=5)
    out: dict[str, tuple[Path, tuple[int, int]]] = {}

    def save(name: str, img: Image.Image, file: str, size=(30, 40), **kw) -> None:
        img.save(folder / file, **kw)
        out[name] = (folder / file, size)

    rgba = np.dstack([rgb, np.full((30, 40), 255, np.uint8)])
    rgba[:, :10, 3] = 0  # a transparent stripe: must come out white
    save("rgba", Image.fromarray(rgba), "rgba.png")
    la = np.dstack([rgb[..., 0], np.full((30, 40), 128, np.uint8)])
    save("la", Image.frombytes("LA", (40, 30), la.tobytes()), "la.png")
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    save("palette_transparency", pal, "pal.png", transparency=0)
    save("palette", pal, "pal_plain.png")
    save("cmyk_jpeg", Image.fromarray(rgb).convert("CMYK"), "cmyk.jpg", quality=95)
    save("png_16bit_grey", Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)), "grey16.png")
    save("tiff_16bit_grey", Image.fromarray((rgb[..., 1].astype(np.uint16) * 257)), "grey16.tiff")
    save("one_bit", Image.fromarray(rgb).convert("1"), "bits.png")
    save("grey_jpeg", Image.fromarray(rgb).convert("L"), "grey.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("exif_rotated", Image.fromarray(rgb), "rot.jpg", size=(40, 30), exif=exif.tobytes())
    save("one_by_one", Image.fromarray(rgb[:1, :1]), "1x1.png", size=(1, 1))
    save("bmp", Image.fromarray(rgb), "img.bmp")
    save("webp_still", Image.fromarray(rgb), "img.webp", lossless=True)
    save("tiff_rgb", Image.fromarray(rgb), "img.tiff")
    # a 16-bit-per-channel RGB PNG, written by hand (Pillow writes 8-bit RGB only)
    raw = b"".join(b"\x00" + (rgb[y].astype(">u2") * 257).tobytes() for y in range(30))
    ihdr = struct.pack(">IIBBBBB", 40, 30, 16, 2, 0, 0, 0)
    (folder / "rgb48.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
                                       + _chunk(b"IEND", b""))
    out["png_16bit_rgb"] = (folder / "rgb48.png", (30, 40))
    return out
