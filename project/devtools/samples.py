"""Sample inputs made by code (nothing is downloaded): photo-like images for the demo and the
benchmark, and hostile ones (a decompression bomb, broken pixel data) for the tests.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw, ImageFilter


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth gradient with shapes and some noise: compresses and resizes like a photo."""
    base = Image.linear_gradient("L").resize((width, height))
    red = base.rotate(seed * 37 % 360).resize((width, height))
    green = Image.effect_noise((width, height), 40 + seed % 30).filter(ImageFilter.GaussianBlur(2))
    im = Image.merge("RGB", (red, green, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    draw = ImageDraw.Draw(im)
    for i in range(6):
        x = (seed * 97 + i * 211) % max(1, width - width // 5)
        y = (seed * 53 + i * 131) % max(1, height - height // 5)
        colour = ((seed * 29 + i * 80) % 256, (i * 60) % 256, (seed * 11) % 256)
        draw.ellipse((x, y, x + width // 5, y + height // 5), fill=colour)
    return im


def encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **kwargs)
    return out.getvalue()


def halves(
    size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]
) -> Image.Image:
    """An RGB image whose left half is `left` and right half is `right`."""
    im = Image.new("RGB", size, left)
    im.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return im


def jpeg_with_orientation(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", quality=95, exif=exif.tobytes())


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real, valid 1-bit PNG of width x height that compresses to a few tens of KB."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def png_with_broken_pixels(width: int = 32, height: int = 32) -> bytes:
    """A PNG whose structure and CRCs are valid but whose pixel data is not zlib at all.

    The API's header and structure checks accept it; only decoding (in the worker) fails, so
    it exercises the worker's permanent-failure path.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"this is not a deflate stream" * 4)
        + _chunk(b"IEND", b"")
    )


def overload_params(n: int) -> dict[str, str]:
    """The form fields of the overload bench's n-th resize: a different (width, height) box
    each time, so a new request key and a new job, never a de-duplicated one. The bench
    measures the worker's capacity on the same boxes the load then asks for."""
    return {"width": str(100 + n % 1400), "height": str(1200 - n // 1400)}
