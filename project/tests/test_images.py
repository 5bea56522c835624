"""Pillow processing, called directly: orientation, modes, formats, draft, pixel values."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from imgproc.images.exceptions import ImageError, TooManyPixels, TruncatedImage, UnsupportedImage
from imgproc.images.schemas import (
    CropParams,
    GrayscaleParams,
    Operation,
    OperationParams,
    ResampleFilter,
    ResizeParams,
)
from imgproc.images.service import inspect_image, process_image
from imgproc.samples import (
    encode,
    halves,
    jpeg_with_orientation,
    photo_like,
    png_bomb,
    png_with_broken_pixels,
)

RED, BLUE = (230, 20, 20), (20, 20, 230)
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


@pytest.mark.parametrize("operation", ["crop", "grayscale", "resize"])
def test_exif_orientation_is_applied(operation: str) -> None:
    # Stored 40x20 with red on the left; orientation 6 means "rotate 90 degrees clockwise to
    # display", so the upright image is 20x40 with red on top.
    data = jpeg_with_orientation(halves((40, 20), RED, BLUE), 6)
    info = inspect_image(data, max_pixels=MAX)
    assert info.upright_size == (20, 40)
    choices: dict[str, OperationParams] = {
        "crop": CropParams(left=0, top=0, width=20, height=10),
        "grayscale": GrayscaleParams(),
        "resize": ResizeParams(width=10),
    }
    params = choices[operation]
    out = run(data, params).convert("RGB")
    top = out.getpixel((out.width // 2, 2))
    assert isinstance(top, tuple)
    if operation == "crop":
        assert out.size == (20, 10)
        assert close(top, RED, 40), f"the upright top must be red, got {top}"
    elif operation == "resize":
        assert out.size == (10, 20)
        assert close(top, RED, 40), f"the upright top must be red, got {top}"
    else:
        bottom = out.getpixel((out.width // 2, out.height - 3))
        assert isinstance(bottom, tuple)
        assert out.size == (20, 40)
        assert top[0] > bottom[0] + 20, "red (brighter luma) must end up on top"
    assert "exif" not in Image.open(io.BytesIO(encode(out, "PNG"))).info


def _source(mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.new("I;16", (64, 48), 40_000)
    base = Image.new("RGBA", (64, 48), (200, 30, 60, 128))
    if mode == "P":
        return base.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    return base.convert(mode)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "JPEG"),
        ("L", "JPEG"),
        ("CMYK", "JPEG"),
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("P", "PNG"),
        ("LA", "PNG"),
        ("1", "PNG"),
        ("I;16", "PNG"),
        ("RGB", "WEBP"),
        ("RGBA", "WEBP"),
    ],
)
@pytest.mark.parametrize("operation", ["crop", "grayscale", "resize"])
def test_every_common_mode_and_format(mode: str, fmt: str, operation: str) -> None:
    data = encode(_source(mode), fmt)
    choices: dict[str, OperationParams] = {
        "crop": CropParams(left=4, top=4, width=20, height=10),
        "grayscale": GrayscaleParams(),
        "resize": ResizeParams(width=32),
    }
    params = choices[operation]
    out = run(data, params)
    assert out.format == fmt, "the output keeps the input's format"
    expected_size = {"crop": (20, 10), "grayscale": (64, 48), "resize": (32, 24)}[operation]
    assert out.size == expected_size
    if mode in ("RGBA", "LA") and fmt in ("PNG", "WEBP"):
        assert "A" in out.mode, f"alpha must survive {operation} ({mode} -> {out.mode})"
    if mode == "CMYK" and operation != "grayscale":
        assert out.mode == "CMYK"
    if mode == "I;16" and operation != "grayscale":
        value = out.getpixel((2, 2))
        assert not isinstance(value, tuple) and value is not None
        assert abs(float(value) - 40_000) < 64, "16-bit depth is kept"
    if operation == "grayscale" and mode not in ("I;16", "1"):
        rgb = out.convert("RGB").getpixel((5, 5))
        assert isinstance(rgb, tuple) and max(rgb) - min(rgb) <= 2, "grayscale has no colour"


def test_jpeg_draft_downscale_matches_full_decode() -> None:
    src = photo_like(1920, 1080, seed=7)
    data = encode(src, "JPEG", quality=90)
    out = run(data, ResizeParams(width=640, height=360)).convert("RGB")
    full = Image.open(io.BytesIO(data)).convert("RGB").resize((640, 360), Image.Resampling.LANCZOS)
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
    with pytest.raises((TruncatedImage, ImageError)):
        inspect_image(data[: len(data) * 2 // 3], max_pixels=MAX)


def test_inspect_rejects_a_bomb_from_the_header() -> None:
    with pytest.raises(TooManyPixels) as err:
        inspect_image(png_bomb(), max_pixels=MAX)
    assert "20000x20000" in err.value.message


def test_broken_pixel_data_passes_inspection_but_fails_processing() -> None:
    data = png_with_broken_pixels()
    assert inspect_image(data, max_pixels=MAX).format == "PNG"
    with pytest.raises(ImageError):
        process_image(data, Operation.GRAYSCALE, GrayscaleParams(), max_pixels=MAX)
