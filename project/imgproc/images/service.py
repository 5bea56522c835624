"""Inspect uploads cheaply (header only) and process images with Pillow.

`inspect_image` runs at the API on every upload: it reads the header, never the pixel data, so
a decompression bomb is refused before anything is stored or queued. `process_image` runs in the
worker: EXIF orientation, every common mode, the input's format kept, JPEG draft for downscales.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from imgproc.images.exceptions import (
    ImageError,
    ParameterError,
    TooManyPixels,
    TruncatedImage,
    UnsupportedImage,
)
from imgproc.images.schemas import (
    CropParams,
    GrayscaleParams,
    Operation,
    OperationParams,
    ResampleFilter,
    ResizeParams,
)

# Our own pixel limit (checked on the header before any decoding) replaces Pillow's global one,
# whose warning would otherwise fire for images we are about to refuse with a clear error.
Image.MAX_IMAGE_PIXELS = None

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112
# What turns the stored pixels upright for each EXIF orientation (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FILTERS = {
    ResampleFilter.NEAREST: Image.Resampling.NEAREST,
    ResampleFilter.BOX: Image.Resampling.BOX,
    ResampleFilter.BILINEAR: Image.Resampling.BILINEAR,
    ResampleFilter.HAMMING: Image.Resampling.HAMMING,
    ResampleFilter.BICUBIC: Image.Resampling.BICUBIC,
    ResampleFilter.LANCZOS: Image.Resampling.LANCZOS,
}
# What Pillow raises for a corrupt file; all of them mean "bad image", never "try again".
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    orientation: int

    @property
    def upright_size(self) -> tuple[int, int]:
        """Size after the EXIF orientation is applied (what the client sees)."""
        if self.orientation in _TRANSPOSING_ORIENTATIONS:
            return self.height, self.width
        return self.width, self.height

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


@dataclass(frozen=True)
class EncodeOptions:
    jpeg_quality: int = 85
    webp_quality: int = 80
    png_compress_level: int = 3


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    format: str
    width: int
    height: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as exc:
        raise UnsupportedImage(
            "the upload is not a JPEG, PNG or WebP image (checked by content, not by name)"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"the image header cannot be read: {exc}") from exc


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooManyPixels(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            details={"width": width, "height": height, "max_pixels": max_pixels},
        )


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8); 1 when it is missing, invalid or unreadable.

    The API (upright size, crop bounds) and the worker (transpose) both read it here so they
    always agree. A broken EXIF block or a value that is not an integer in 1..8 (e.g. an ASCII
    string) is ignored, as browsers do, instead of failing the job.
    """
    try:
        # The base method, not PngImageFile.getexif: that one decodes every pixel to look for an
        # eXIf chunk after the image data. Only metadata before the pixels counts, in both places.
        value = Image.Image.getexif(im).get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    return 1


def _check_complete(data: bytes, fmt: str) -> None:
    """Refuse a cut-off file from its structure, without decoding the pixels."""
    complete = True
    if fmt == "JPEG":
        # Entropy-coded data never contains 0xFFD9/0xFFDA (0xFF is stuffed), so the last scan
        # (SOS) must be followed by an end-of-image marker; a trailer after it is allowed.
        # Searched from both ends: no SOS after the last EOI, and a first SOS before it. (An
        # `rfind` of the last SOS walks back over the whole scan of a baseline JPEG, ~0.1 ms.)
        end = data.rfind(b"\xff\xd9")
        complete = 0 < data.find(b"\xff\xda") < end and data.find(b"\xff\xda", end) == -1
    elif fmt == "WEBP":
        (riff_size,) = struct.unpack_from("<I", data, 4)
        complete = riff_size + 8 <= len(data)
    elif fmt == "PNG":
        complete = b"IEND" in data[-64:]
        if complete:
            try:  # walks every chunk and checks its CRC; it does not inflate the pixels
                Image.open(io.BytesIO(data), formats=["PNG"]).verify()
            except _DECODE_ERRORS as exc:
                raise ImageError(f"the PNG is corrupt: {exc}") from exc
    if not complete:
        raise TruncatedImage(f"the {fmt} file is truncated (its end marker is missing)")


def inspect_image(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Return format and size from the header; raise an ImageError for anything unusable."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        _check_complete(data, "WEBP")  # libwebp refuses a cut-off file with a vaguer message
    im = _open(data)
    with im:
        assert im.format is not None  # set by every plugin that opened the file
        _check_pixels(im.width, im.height, max_pixels)
        info = ImageInfo(im.format, im.width, im.height, _orientation(im))
    _check_complete(data, info.format)
    return info


def check_params(info: ImageInfo, params: OperationParams, *, max_pixels: int) -> None:
    """Raise ParameterError when `params` do not fit this image (e.g. a crop box outside it)."""
    width, height = info.upright_size
    if isinstance(params, CropParams):
        if params.left + params.width > width or params.top + params.height > height:
            raise ParameterError(
                f"the crop box (left={params.left}, top={params.top}, width={params.width}, "
                f"height={params.height}) is not inside the {width}x{height} image",
                details={"image_width": width, "image_height": height},
            )
    elif isinstance(params, ResizeParams):
        new_w, new_h = params.target_size(width, height)
        if new_w * new_h > max_pixels:
            raise ParameterError(
                f"the output would be {new_w}x{new_h} pixels; the limit is {max_pixels}",
                details={"width": new_w, "height": new_h, "max_pixels": max_pixels},
            )


def _to_resizable(im: Image.Image) -> Image.Image:
    if im.mode in ("P", "PA"):
        has_alpha = im.mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if im.mode == "1":
        return im.convert("L")
    return im


def _to_gray(im: Image.Image) -> Image.Image:
    if im.mode in ("L", "LA", "I", "F") or im.mode.startswith("I;16"):
        return im
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("P", "PA"):
        im = _to_resizable(im)
    if im.mode == "CMYK":
        im = im.convert("RGB")
    if im.mode in ("RGBA", "RGBa"):
        return im.convert("LA")
    return im.convert("L")


def _for_format(im: Image.Image, fmt: str) -> Image.Image:
    """Convert to a mode the output format can store, keeping alpha where it can."""
    if fmt == "JPEG" and im.mode not in ("L", "RGB", "CMYK"):
        return im.convert("L" if im.mode in ("LA", "I", "F") or im.mode.startswith("I;") else "RGB")
    if fmt == "WEBP" and im.mode not in ("RGB", "RGBA"):
        has_alpha = "A" in im.mode or "transparency" in im.info
        if im.mode.startswith("I"):
            im = im.point(lambda v: v / 256).convert("L") if im.mode.startswith("I;16") else im
        return im.convert("RGBA" if has_alpha else "RGB")
    return im


def _colour_space(mode: str) -> str:
    if mode == "CMYK":
        return "cmyk"
    return "rgb" if mode in ("RGB", "RGBA", "RGBa", "P", "PA") else "gray"


def _encode(
    im: Image.Image, fmt: str, icc: bytes | None, source_mode: str, options: EncodeOptions
) -> bytes:
    out = io.BytesIO()
    im = _for_format(im, fmt)
    kwargs: dict[str, object] = {}
    # An ICC profile describes one colour space: keep it only if the pixels are still in it.
    if icc and _colour_space(im.mode) == _colour_space(source_mode):
        kwargs["icc_profile"] = icc
    if fmt == "JPEG":
        kwargs["quality"] = options.jpeg_quality
    elif fmt == "WEBP":
        kwargs["quality"] = options.webp_quality
    else:
        kwargs["compress_level"] = options.png_compress_level
    im.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _draft_size(info_orientation: int, size: tuple[int, int]) -> tuple[int, int]:
    """Map an upright size back to the stored (pre-rotation) orientation."""
    if info_orientation in _TRANSPOSING_ORIENTATIONS:
        return size[1], size[0]
    return size


def process_image(
    data: bytes,
    operation: Operation,
    params: OperationParams,
    *,
    max_pixels: int,
    options: EncodeOptions | None = None,
) -> ProcessedImage:
    """Apply `operation` and return the encoded result in the input's format."""
    options = options or EncodeOptions()
    im = _open(data)
    try:
        fmt = im.format
        assert fmt is not None
        _check_pixels(im.width, im.height, max_pixels)
        icc = im.info.get("icc_profile")
        orientation = _orientation(im)
        if orientation in _TRANSPOSING_ORIENTATIONS:
            upright = (im.height, im.width)
        else:
            upright = (im.width, im.height)
        if isinstance(params, ResizeParams):
            target = params.target_size(*upright)
            if fmt == "JPEG":
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below the target: the same
                # LANCZOS result from far fewer pixels (about 2x faster for a 1080p -> 360p).
                im.draft(im.mode, _draft_size(orientation, target))
        elif isinstance(params, GrayscaleParams) and fmt == "JPEG" and im.mode == "RGB":
            # libjpeg hands out the luma channel directly, skipping colour conversion.
            im.draft("L", im.size)
        im.load()
        source_mode = im.mode
        # Our own transpose from the checked value: ImageOps.exif_transpose would re-read the
        # raw tag and could disagree with the upright size the API validated the request with.
        method = _UPRIGHT.get(orientation)
        upright_im = im if method is None else im.transpose(method)
        result = _apply(upright_im, params, upright)
        icc_bytes = icc if isinstance(icc, bytes) else None
        encoded = _encode(result, fmt, icc_bytes, source_mode, options)
        return ProcessedImage(encoded, fmt, result.width, result.height)
    except ImageError:
        raise
    except _DECODE_ERRORS as exc:
        raise ImageError(f"the image cannot be decoded: {exc}") from exc
    finally:
        im.close()


def _apply(im: Image.Image, params: OperationParams, upright: tuple[int, int]) -> Image.Image:
    if isinstance(params, CropParams):
        return im.crop(
            (params.left, params.top, params.left + params.width, params.top + params.height)
        )
    if isinstance(params, GrayscaleParams):
        return _to_gray(im)
    target = params.target_size(*upright)
    return _to_resizable(im).resize(target, _FILTERS[params.filter])


__all__ = [
    "ALLOWED_FORMATS",
    "EXTENSIONS",
    "MEDIA_TYPES",
    "EncodeOptions",
    "ImageInfo",
    "Operation",
    "ProcessedImage",
    "check_params",
    "inspect_image",
    "process_image",
]
