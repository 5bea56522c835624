"""Every bad input gets a clear 4xx JSON error and leaves no job row and no stored file."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devtools.launch import Child, free_port, start_api
from devtools.samples import encode, photo_like, png_bomb, png_with_broken_pixels
from PIL import Image

from imgproc.config import Settings

WaitDone = Callable[..., dict[str, Any]]  # the `wait_done` fixture
JPEG = encode(photo_like(120, 80, seed=2), "JPEG")


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text}"
    )
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "request_id"}, "every error has the same JSON shape"
    assert body["error"]["code"] == code, body
    for word in words:
        assert word in body["error"]["message"], (
            f"{word!r} should explain: {body['error']['message']}"
        )


@pytest.fixture
def no_trace(
    settings: Settings, row_count: Callable[[], int], blob_count: Callable[[Path], int]
) -> Iterator[None]:
    """Fail the test if it leaves a job row or a stored file behind."""
    rows, files = row_count(), blob_count(settings.data_dir)
    yield
    assert row_count() == rows, "a rejected request must not insert a job row"
    assert blob_count(settings.data_dir) == files, "a rejected request must not leave a stored file"


def post(
    client: httpx.Client, op: str, data: bytes, name: str = "x.jpg", /, **fields: object
) -> httpx.Response:
    return client.post(
        f"/{op}",
        files={"file": (name, data, "image/jpeg")},
        data={k: str(v) for k, v in fields.items()},
    )


@pytest.mark.usefixtures("no_trace")
@pytest.mark.parametrize(
    ("data", "status", "code", "word"),
    [
        (b"", 415, "unsupported_image", "empty"),
        (b"GIF89a but not really an image at all", 415, "unsupported_image", "JPEG, PNG or WebP"),
        (encode(Image.new("RGB", (8, 8)), "GIF"), 415, "unsupported_image", "not a JPEG"),
        (JPEG[: len(JPEG) // 2], 422, "truncated_image", "truncated"),
        (encode(photo_like(80, 60), "PNG")[:-40], 422, "truncated_image", "truncated"),
        (encode(photo_like(80, 60), "WEBP")[:-50], 422, "truncated_image", "truncated"),
        (png_bomb(), 422, "too_many_pixels", "20000x20000"),
    ],
    ids=["empty", "text", "gif", "truncated-jpeg", "truncated-png", "truncated-webp", "bomb"],
)
def test_bad_images_are_refused(
    client: httpx.Client, data: bytes, status: int, code: str, word: str
) -> None:
    # The name and content type claim JPEG: only the content decides.
    assert_error(post(client, "grayscale", data, "photo.jpg"), status, code, word)


BAD, FORM = "invalid_parameters", "validation_error"


@pytest.mark.usefixtures("no_trace")
@pytest.mark.parametrize(
    ("op", "fields", "code", "words"),
    [
        # Checked against the image (or by the parameter models): invalid_parameters.
        ("crop", {"left": 100, "top": 0, "width": 30, "height": 10}, BAD, ["not inside", "120x80"]),
        ("crop", {"left": -1, "top": 0, "width": 3, "height": 3}, BAD, ["left"]),
        ("crop", {"left": 0, "top": 0, "width": 0, "height": 3}, BAD, ["width"]),
        ("resize", {}, BAD, ["width, height or both"]),
        ("resize", {"width": 0}, BAD, ["width", "greater than or equal to 1"]),
        ("resize", {"width": 10_001}, BAD, ["width", "less than or equal to 10000"]),
        ("resize", {"width": 10_000, "height": 10_000, "keep_aspect": "false"}, BAD, ["limit"]),
        # Missing or of the wrong type in the form itself: FastAPI's validation_error.
        ("crop", {"left": 0, "top": 0, "width": 3}, FORM, ["height", "required"]),
        ("resize", {"width": "wide"}, FORM, ["width", "integer"]),
        ("resize", {"width": 10, "filter": "sharpest"}, FORM, ["filter", "lanczos"]),
    ],
)
def test_bad_parameters_are_refused(
    client: httpx.Client, op: str, fields: dict[str, object], code: str, words: list[str]
) -> None:
    assert_error(post(client, op, JPEG, **fields), 422, code, *words)


@pytest.mark.usefixtures("no_trace")
def test_missing_file_is_refused(client: httpx.Client) -> None:
    assert_error(client.post("/grayscale", data={"x": "1"}), 422, "validation_error", "file")


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("endpoint", ["/task-status", "/result"])
@pytest.mark.parametrize(
    ("task_id", "status", "code", "word"),
    [
        (UNKNOWN_ID, 404, "task_not_found", UNKNOWN_ID),
        (UNKNOWN_ID.upper(), 404, "task_not_found", UNKNOWN_ID),  # the same id, other case
        ("not-a-uuid", 422, "validation_error", "task_id"),
        ("123", 422, "validation_error", "task_id"),
        (UNKNOWN_ID + "0", 422, "validation_error", "task_id"),
        # Encoded slashes do not reach a handler (or the file store): no such route.
        ("..%2F..%2Fetc%2Fpasswd", 404, "not_found", ""),
        ("", 404, "not_found", ""),
    ],
    ids=["unknown", "unknown-upper", "text", "number", "too-long", "traversal", "empty"],
)
def test_unknown_and_malformed_ids(
    client: httpx.Client, endpoint: str, task_id: str, status: int, code: str, word: str
) -> None:
    assert_error(client.get(f"{endpoint}/{task_id}"), status, code, word)


def test_unknown_route(client: httpx.Client) -> None:
    assert_error(client.get("/no-such-route"), 404, "not_found")


def test_image_the_worker_cannot_decode_fails_permanently(
    stack: httpx.Client, wait_done: WaitDone
) -> None:
    response = post(stack, "grayscale", png_with_broken_pixels(), "broken.png")
    assert response.status_code == 202, "its header and structure are valid"
    status = wait_done(stack, response.json()["task_id"])
    assert status["status"] == "failed" and status["attempts"] == 1, "a bad image is not retried"
    assert "cannot be decoded" in status["error"], status["error"]
    assert_error(stack.get(f"/result/{status['task_id']}"), 410, "task_failed", "failed")


def jpeg_with_text_orientation() -> bytes:
    """A 120x80 JPEG whose EXIF Orientation is the ASCII string "abc" instead of a number."""
    entry = struct.pack(">HHI", 0x0112, 2, 4) + b"abc\0"  # tag, type ASCII, count, value
    tiff = b"MM\0*" + struct.pack(">IH", 8, 1) + entry + struct.pack(">I", 0)
    return encode(photo_like(120, 80, seed=4), "JPEG", exif=b"Exif\0\0" + tiff)


def test_invalid_orientation_is_ignored_by_api_and_worker(
    stack: httpx.Client, wait_done: WaitDone
) -> None:
    # 120 wide fits only the image as stored: the API and the worker must both read the
    # orientation as 1 (the worker used to fail the job on int("abc")).
    fields = {"left": 0, "top": 0, "width": 120, "height": 40}
    response = post(stack, "crop", jpeg_with_text_orientation(), "odd.jpg", **fields)
    assert response.status_code == 202, response.text
    status = wait_done(stack, response.json()["task_id"])
    assert status["status"] == "done", status
    result = stack.get(f"/result/{status['task_id']}")
    assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(result.content)).size == (120, 40)


@pytest.fixture(scope="module")
def small_limit_api(settings: Settings, migrated: str, logs_dir: Path) -> Iterator[str]:
    port = free_port()
    limited = settings.model_copy(update={"max_upload_bytes": 50_000, "max_pixels": 100_000})
    child: Child = start_api(limited, logs_dir / "api-limits.log", port=port)
    yield f"http://127.0.0.1:{port}"
    child.stop()


@pytest.mark.usefixtures("no_trace")
def test_oversize_upload_is_refused_from_the_header(small_limit_api: str) -> None:
    big = b"\xff\xd8" + b"\x00" * 200_000
    with httpx.Client(base_url=small_limit_api, timeout=30) as client:
        assert_error(post(client, "grayscale", big), 413, "upload_too_large", "larger than")


@pytest.mark.usefixtures("no_trace")
def test_oversize_chunked_upload_is_cut_off(small_limit_api: str) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
    payload = body + b"\x00" * 300_000 + b"\r\n--b--\r\n"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count as it reads
        for i in range(0, len(payload), 16_384):
            yield payload[i : i + 16_384]

    with httpx.Client(base_url=small_limit_api, timeout=30) as client:
        response = client.post(
            "/grayscale",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert_error(response, 413, "upload_too_large")


@pytest.mark.usefixtures("no_trace")
def test_file_just_over_the_limit_is_refused(small_limit_api: str) -> None:
    # Under limit + multipart slack, so only the exact size check after parsing catches it.
    data = encode(photo_like(40, 40), "PNG") + b"\x00" * 60_000
    with httpx.Client(base_url=small_limit_api, timeout=30) as client:
        assert_error(post(client, "grayscale", data, "x.png"), 413, "upload_too_large", "50000")


@pytest.mark.usefixtures("no_trace")
def test_pixel_limit_is_configurable(small_limit_api: str) -> None:
    data = encode(Image.new("RGB", (400, 300)), "PNG")  # 120,000 pixels > 100,000
    with httpx.Client(base_url=small_limit_api, timeout=30) as client:
        assert_error(post(client, "grayscale", data, "x.png"), 422, "too_many_pixels", "100000")
