"""Pillow processing, called directly: orientation, modes, formats, draft, pixel values."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from array import array
from collections.abc import Callable

import pytest
from devtools.samples import encode, photo_like, png_bomb, png_with_broken_pixels
from PIL import Image, ImageChops, ImageFile, ImageFilter, ImageOps, ImageStat
from PIL.JpegImagePlugin import JpegImageFile
from PIL.WebPImagePlugin import WebPImageFile

from imgproc.images.exceptions import ImageError, TooManyPixels, TruncatedImage, UnsupportedImage
from imgproc.images.schemas import (
    CropParams,
    GrayscaleParams,
    Operation,
    OperationParams,
    ResampleFilter,
    ResizeParams,
)
from imgproc.images.service import check_params, inspect_image, process_image

MAX = 16_800_000


def run(data: bytes, params: OperationParams) -> Image.Image:
    op = {
        CropParams: Operation.CROP,
        GrayscaleParams: Operation.GRAYSCALE,
        ResizeParams: Operation.RESIZE,
    }[type(params)]
    result = process_image(data, op, params, max_pixels=MAX)
    out = Image.open(io.BytesIO(result.data))
    assert out.format == result.format
    assert out.size == (result.width, result.height)
    return out


def close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def test_crop_is_pixel_exact_on_png() -> None:
    src = photo_like(120, 80, seed=3)
    out = run(encode(src, "PNG"), CropParams(left=10, top=20, width=50, height=30))
    assert out.format == "PNG" and out.size == (50, 30)
    expected = src.crop((10, 20, 60, 50))
    assert ImageChops.difference(out.convert("RGB"), expected).getbbox() is None, (
        "crop must copy exactly the requested box"
    )


def test_grayscale_uses_luma_weights() -> None:
    src = Image.new("RGB", (16, 16), (200, 100, 50))
    out = run(encode(src, "PNG"), GrayscaleParams())
    assert out.mode == "L"
    expected = round(200 * 0.299 + 100 * 0.587 + 50 * 0.114)
    assert abs(out.getpixel((5, 5)) - expected) <= 1  # type: ignore[operator]


def test_resize_matches_pillow_lanczos_on_png() -> None:
    src = photo_like(200, 100, seed=1)
    out = run(encode(src, "PNG"), ResizeParams(width=80))
    assert out.size == (80, 40), "keep_aspect with only width must scale height too"
    expected = src.resize((80, 40), Image.Resampling.LANCZOS)
    assert ImageChops.difference(out.convert("RGB"), expected).getbbox() is None


@pytest.mark.parametrize(
    ("params", "size"),
    [
        (ResizeParams(width=50, height=50), (50, 25)),  # fit inside, aspect kept
        (ResizeParams(width=50, height=50, keep_aspect=False), (50, 50)),
        (ResizeParams(height=10), (20, 10)),
        (ResizeParams(width=30, keep_aspect=False), (30, 100)),
        (ResizeParams(width=400, filter=ResampleFilter.NEAREST), (400, 200)),
    ],
)
def test_resize_sizes(params: ResizeParams, size: tuple[int, int]) -> None:
    out = run(encode(photo_like(200, 100), "PNG"), params)
    assert out.size == size


# Four colours with distinct luma too (82, 137, 15, 240), so grayscale output still tells the
# quadrants apart.
TL, TR, BL, BR = (230, 20, 20), (20, 220, 20), (15, 15, 15), (240, 240, 240)
STORED = (96, 48)  # not square: a missed or extra 90-degree turn changes the size


def quadrants(size: tuple[int, int] = STORED) -> Image.Image:
    """An asymmetric RGB image: any flip or turn moves at least one colour."""
    w, h = size
    im = Image.new("RGB", size, TL)
    im.paste(TR, (w // 2, 0, w, h // 2))
    im.paste(BL, (0, h // 2, w // 2, h))
    im.paste(BR, (w // 2, h // 2, w, h))
    return im


def upright(stored: Image.Image, orientation: int) -> Image.Image:
    """What a viewer shows, from the EXIF definition of the tag, not from Pillow's transposes.

    The value says which side of the display the stored row 0 and column 0 end up on; this maps
    every stored pixel (x, y) to its displayed position.
    """
    w, h = stored.size
    size = (h, w) if orientation >= 5 else (w, h)
    moves: dict[int, Callable[[int, int], tuple[int, int]]] = {
        1: lambda x, y: (x, y),  # row 0 top, column 0 left
        2: lambda x, y: (w - 1 - x, y),  # row 0 top, column 0 right
        3: lambda x, y: (w - 1 - x, h - 1 - y),  # row 0 bottom, column 0 right
        4: lambda x, y: (x, h - 1 - y),  # row 0 bottom, column 0 left
        5: lambda x, y: (y, x),  # row 0 left, column 0 top
        6: lambda x, y: (h - 1 - y, x),  # row 0 right, column 0 top
        7: lambda x, y: (h - 1 - y, w - 1 - x),  # row 0 right, column 0 bottom
        8: lambda x, y: (y, w - 1 - x),  # row 0 left, column 0 bottom
    }
    where = moves[orientation]
    out = Image.new(stored.mode, size)
    src, dst = stored.load(), out.load()
    assert src is not None and dst is not None
    for y in range(h):
        for x in range(w):
            dst[where(x, y)] = src[x, y]
    return out


def assert_quadrants_match(out: Image.Image, expected: Image.Image, tol: int) -> None:
    """Compare the centre of each quadrant, away from the edges lossy codecs blur."""
    assert out.size == expected.size
    # In RGB even for grayscale: colour left in a grayscale output counts as a difference.
    a, b = out.convert("RGB"), expected.convert("RGB")
    w, h = out.size
    for x, y in (
        (w // 4, h // 4),
        (3 * w // 4, h // 4),
        (w // 4, 3 * h // 4),
        (3 * w // 4, 3 * h // 4),
    ):
        got, want = a.getpixel((x, y)), b.getpixel((x, y))
        assert isinstance(got, tuple) and isinstance(want, tuple)
        assert close(got, want, tol), f"at ({x}, {y}): got {got}, expected {want}"


def with_exif(im: Image.Image, fmt: str, exif: bytes) -> bytes:
    # Lossless WebP so that only the service's own encoding is lossy.
    extra: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    return encode(im, fmt, exif=exif, **extra)


def orientation_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


TOLERANCE = {"JPEG": 16, "PNG": 0, "WEBP": 16}


def apply_reference(im: Image.Image, params: OperationParams) -> Image.Image:
    """The operation done by Pillow directly on an already upright image."""
    if isinstance(params, CropParams):
        return im.crop(
            (params.left, params.top, params.left + params.width, params.top + params.height)
        )
    if isinstance(params, GrayscaleParams):
        return im.convert("L")
    return im.resize(params.target_size(*im.size), Image.Resampling.LANCZOS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("operation", ["crop", "grayscale", "resize"])
def test_every_exif_orientation_is_applied(orientation: int, fmt: str, operation: str) -> None:
    stored = quadrants()
    expected_upright = upright(stored, orientation)
    data = with_exif(stored, fmt, orientation_exif(orientation))
    info = inspect_image(data, max_pixels=MAX)
    assert info.orientation == orientation
    assert info.upright_size == expected_upright.size
    w, h = expected_upright.size
    choices: dict[str, OperationParams] = {
        # The upright top half: the box is in upright coordinates.
        "crop": CropParams(left=0, top=0, width=w, height=h // 2),
        "grayscale": GrayscaleParams(),
        "resize": ResizeParams(width=w // 2),
    }
    params = choices[operation]
    out = run(data, params)
    expected = apply_reference(expected_upright, params)
    assert_quadrants_match(out, expected, TOLERANCE[fmt])
    # The pixels are upright now: a kept tag would make viewers turn them a second time.
    assert out.getexif().get(0x0112) is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [None, 6])
def test_inspect_reads_the_orientation_without_decoding(
    fmt: str, orientation: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow's PNG getexif() decodes every pixel when there is no eXIf chunk before them: at
    # the API, for each upload, that would cost as much as the job itself.
    def refuse(self: Image.Image) -> None:
        raise AssertionError("inspect_image decoded the pixels")

    exif = b"" if orientation is None else orientation_exif(orientation)
    data = with_exif(quadrants(), fmt, exif)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(WebPImageFile, "load", refuse)
    assert inspect_image(data, max_pixels=MAX).orientation == (orientation or 1)


def exif_with_raw_orientation(field_type: int, count: int, value: bytes) -> bytes:
    """An EXIF block whose Orientation entry has any type and value (Pillow writes only SHORT)."""
    entry = struct.pack(">HHI", 0x0112, field_type, count) + value.ljust(4, b"\0")
    ifd = struct.pack(">H", 1) + entry + struct.pack(">I", 0)
    return b"Exif\0\0" + b"MM\0*" + struct.pack(">I", 8) + ifd


ASCII, SHORT = 2, 3


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize(
    "exif",
    [
        exif_with_raw_orientation(ASCII, 4, b"abc\0"),
        # int() would read "6" as a turn that Pillow's exif_transpose does not do.
        exif_with_raw_orientation(ASCII, 2, b"6\0"),
        exif_with_raw_orientation(SHORT, 1, struct.pack(">H", 9)),
        b"Exif\0\0XX\0*\0\0\0\x08",  # not a TIFF header at all
    ],
    ids=["ascii-text", "ascii-digit", "out-of-range", "bad-header"],
)
def test_invalid_orientation_is_ignored_in_api_and_worker(exif: bytes, fmt: str) -> None:
    stored = quadrants()
    data = with_exif(stored, fmt, exif)
    info = inspect_image(data, max_pixels=MAX)
    assert info.orientation == 1 and info.upright_size == STORED
    # A box that only fits the stored (unturned) image is accepted by the API...
    params = CropParams(left=8, top=4, width=STORED[0] - 8, height=STORED[1] - 8)
    check_params(info, params, max_pixels=MAX)
    # ...and the worker does the same crop on the same unturned pixels instead of failing.
    out = run(data, params)
    assert_quadrants_match(out, apply_reference(stored, params), TOLERANCE[fmt])
    resized = run(data, ResizeParams(width=STORED[0] // 2))
    assert_quadrants_match(
        resized, apply_reference(stored, ResizeParams(width=STORED[0] // 2)), TOLERANCE[fmt]
    )


ALPHA = Image.linear_gradient("L").resize((64, 48)).point(lambda v: 64 + v * 191 // 255)


def _source(mode: str) -> Image.Image:
    """A 64x48 image with detail (and a varying alpha) so that misplaced pixels show."""
    if mode == "I;16":
        gradient = Image.linear_gradient("L").resize((64, 48)).convert("I")
        return gradient.point(lambda v: v * 200 + 2000).convert("I;16")
    # Blurred: lossy codecs add little noise to smooth content, so their tolerance stays small.
    photo = photo_like(64, 48, seed=5).filter(ImageFilter.GaussianBlur(2))
    if mode in ("RGBA", "LA"):
        photo.putalpha(ALPHA)
        return photo.convert(mode)
    if mode == "P":
        return photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    if mode == "PT":  # a palette image with one transparent entry (tRNS)
        im = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        im.info["transparency"] = im.getpixel((0, 0))
        return im
    return photo.convert(mode)


def _reference_mode(src: Image.Image) -> str:
    """The mode in which Pillow's own conversion of the source is compared with the output."""
    if "A" in src.mode or "transparency" in src.info:
        return "RGBA" if src.mode in ("RGBA", "P") else "LA"
    if src.mode in ("1", "L"):
        return "L"
    return "RGB"  # RGB, CMYK and P: what a viewer would show


def _expected(src: Image.Image, operation: str) -> Image.Image:
    # 16-bit stays 16-bit (and grayscale leaves it as it is).
    base = src if src.mode == "I;16" else src.convert(_reference_mode(src))
    if operation == "crop":
        return base.crop((4, 4, 24, 14))
    if operation == "resize":
        return base.resize((32, 24), Image.Resampling.LANCZOS)
    if base.mode in ("RGBA", "LA"):
        return base.convert("LA")
    return base if base.mode == "I;16" else base.convert("L")


def _mean_and_max_diff(out: Image.Image, expected: Image.Image) -> tuple[float, int]:
    if expected.mode == "I;16":
        got, want = (array("i", im.convert("I").tobytes()) for im in (out, expected))
        diffs = [abs(a - b) for a, b in zip(got, want, strict=True)]
        return sum(diffs) / len(diffs), max(diffs)
    # Compared in RGB(A): a grayscale output with colour left in it differs from the gray
    # expectation, and an output that lost its alpha differs from the varying one.
    wide = "RGBA" if "A" in expected.mode else "RGB"
    diff = ImageChops.difference(out.convert(wide), expected.convert(wide))
    extrema = diff.getextrema()
    peaks = [band[1] for band in extrema] if isinstance(extrema[0], tuple) else [extrema[1]]
    return max(ImageStat.Stat(diff).mean), max(int(p) for p in peaks)


@pytest.mark.parametrize(
    ("mode", "fmt", "mean_tol"),
    [
        ("RGB", "JPEG", 10),
        ("L", "JPEG", 10),
        ("CMYK", "JPEG", 10),
        ("RGB", "PNG", 0),
        ("RGBA", "PNG", 0),
        ("P", "PNG", 0),
        ("PT", "PNG", 0),
        ("LA", "PNG", 0),
        ("1", "PNG", 0),
        ("I;16", "PNG", 0),
        ("RGB", "WEBP", 10),
        ("RGBA", "WEBP", 10),
    ],
)
@pytest.mark.parametrize("operation", ["crop", "grayscale", "resize"])
def test_every_common_mode_and_format(mode: str, fmt: str, mean_tol: int, operation: str) -> None:
    src = _source(mode)
    extra: dict[str, object] = {"transparency": src.info["transparency"]} if mode == "PT" else {}
    data = encode(src, fmt, **extra)
    choices: dict[str, OperationParams] = {
        "crop": CropParams(left=4, top=4, width=20, height=10),
        "grayscale": GrayscaleParams(),
        "resize": ResizeParams(width=32),
    }
    out = run(data, choices[operation])
    assert out.format == fmt, "the output keeps the input's format"
    expected = _expected(src, operation)
    assert out.size == expected.size
    if "A" in expected.mode and fmt in ("PNG", "WEBP"):
        assert "A" in out.mode or "transparency" in out.info, f"alpha must survive {operation}"
    if mode == "CMYK" and operation != "grayscale":
        assert out.mode == "CMYK", "CMYK is kept (with its ICC profile, if any)"
    mean, peak = _mean_and_max_diff(out, expected)
    # Lossless in and out: every pixel exact. Lossy: the codec's noise only; a wrong palette,
    # inverted CMYK or lost/premultiplied alpha is off by tens on average.
    assert mean <= mean_tol, f"{mode} {fmt} {operation}: mean difference {mean:.2f}"
    if mean_tol == 0:
        assert peak == 0, f"{mode} {fmt} {operation}: a pixel differs by {peak}"


@pytest.mark.parametrize("orientation", [1, 6])
def test_jpeg_draft_downscale_decodes_fewer_pixels(
    orientation: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Upright 1920x1080 either way; with orientation 6 the stored image is 1080x1920, so the
    # draft request has to be turned back into stored coordinates.
    upright_src = photo_like(1920, 1080, seed=7)
    stored = upright_src if orientation == 1 else upright_src.transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "JPEG", quality=90, exif=orientation_exif(orientation))
    calls: list[tuple[tuple[int, int] | None, tuple[int, int]]] = []
    real_draft = JpegImageFile.draft

    def spy(
        self: JpegImageFile, mode: str | None, size: tuple[int, int] | None
    ) -> tuple[str, tuple[int, int, float, float]] | None:
        result = real_draft(self, mode, size)
        calls.append((size, self.size))  # what was asked for, what will be decoded
        return result

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    out = run(data, ResizeParams(width=640, height=360)).convert("RGB")
    # libjpeg's largest reduction that stays above 640x360 is 1/2: 960x540 decoded, not 1920x1080.
    want = ((640, 360), (960, 540)) if orientation == 1 else ((360, 640), (540, 960))
    assert calls == [want], f"the resize must decode the JPEG with draft(): {calls}"
    full_decode = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    full = full_decode.resize((640, 360), Image.Resampling.LANCZOS)
    diff = ImageStat.Stat(ImageChops.difference(out, full)).mean
    assert out.size == (640, 360)
    assert max(diff) < 3, f"draft decoding must look like a full decode (mean diff {diff})"


def test_inspect_rejects_non_images_and_unsupported_formats() -> None:
    with pytest.raises(UnsupportedImage):
        inspect_image(b"hello, not an image", max_pixels=MAX)
    with pytest.raises(UnsupportedImage):
        inspect_image(encode(Image.new("RGB", (8, 8)), "GIF"), max_pixels=MAX)
    with pytest.raises(UnsupportedImage):
        inspect_image(encode(Image.new("RGB", (8, 8)), "BMP"), max_pixels=MAX)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_inspect_rejects_truncated_files(fmt: str) -> None:
    data = encode(photo_like(200, 150), fmt)
    with pytest.raises(TruncatedImage) as err:
        inspect_image(data[: len(data) * 2 // 3], max_pixels=MAX)
    assert type(err.value) is TruncatedImage and err.value.code == "truncated_image"
    assert err.value.status_code == 422 and "truncated" in err.value.message


def test_inspect_rejects_a_bomb_from_the_header() -> None:
    with pytest.raises(TooManyPixels) as err:
        inspect_image(png_bomb(), max_pixels=MAX)
    assert "20000x20000" in err.value.message


def test_broken_pixel_data_passes_inspection_but_fails_processing() -> None:
    data = png_with_broken_pixels()
    assert inspect_image(data, max_pixels=MAX).format == "PNG"
    with pytest.raises(ImageError):
        process_image(data, Operation.GRAYSCALE, GrayscaleParams(), max_pixels=MAX)


# A fresh interpreter allocates and frees 12 MP images (three 16 MB Pillow blocks each, as a
# worker does per job) and prints the page faults of the last 10.
_FAULTS_SCRIPT = """
import resource, sys
from PIL import Image
from imgproc.images.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for i in range(13):
    if i == 3:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    Image.new("RGB", (4000, 3000), (i, 0, 0)).convert("L")
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_kept_image_memory_is_reused_without_page_faults() -> None:
    def faults(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS_SCRIPT, mode],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"},
        )
        return int(out.stdout)

    default, kept = faults("default"), faults("keep")
    # 10 images x 60 MB of fresh pages each would be ~150,000 faults.
    assert default > 10_000, f"the default allocator should fault memory back in ({default})"
    assert kept < 1_000, f"kept memory should be reused ({kept} page faults for 10 images)"
