"""Every bad input gets a clear 4xx JSON error and leaves no job row and no stored file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imgproc.config import Settings
from imgproc.launch import Child, free_port, start_api
from imgproc.samples import encode, photo_like, png_bomb, png_with_broken_pixels
from imgproc.storage.service import ContentStore

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
def no_trace(settings: Settings, row_count: Callable[[], int]) -> Iterator[None]:
    """Fail the test if it leaves a job row or a stored file behind."""
    store = ContentStore(settings.data_dir)
    rows, files = row_count(), store.count()
    yield
    assert row_count() == rows, "a rejected request must not insert a job row"
    assert store.count() == files, "a rejected request must not leave a stored file"


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


@pytest.mark.usefixtures("no_trace")
@pytest.mark.parametrize(
    ("op", "fields", "words"),
    [
        ("crop", {"left": 100, "top": 0, "width": 30, "height": 10}, ["not inside", "120x80"]),
        ("crop", {"left": -1, "top": 0, "width": 3, "height": 3}, ["left"]),
        ("crop", {"left": 0, "top": 0, "width": 0, "height": 3}, ["width"]),
        ("crop", {"left": 0, "top": 0, "width": 3}, ["height", "required"]),
        ("resize", {}, ["width, height or both"]),
        ("resize", {"width": 0}, ["width", "greater than or equal to 1"]),
        ("resize", {"width": 10_001}, ["width", "less than or equal to 10000"]),
        ("resize", {"width": "wide"}, ["width", "integer"]),
        ("resize", {"width": 10, "filter": "sharpest"}, ["filter"]),
        ("resize", {"width": 10_000, "height": 10_000, "keep_aspect": "false"}, ["limit"]),
    ],
)
def test_bad_parameters_are_refused(
    client: httpx.Client, op: str, fields: dict[str, object], words: list[str]
) -> None:
    response = post(client, op, JPEG, **fields)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] in ("invalid_parameters", "validation_error")
    for word in words:
        assert word in response.json()["error"]["message"], response.json()


@pytest.mark.usefixtures("no_trace")
def test_missing_file_is_refused(client: httpx.Client) -> None:
    assert_error(client.post("/grayscale", data={"x": "1"}), 422, "validation_error", "file")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/task-status/00000000-0000-4000-8000-000000000000", 404, "task_not_found"),
        ("/result/00000000-0000-4000-8000-000000000000", 404, "task_not_found"),
        ("/task-status/not-a-uuid", 422, "validation_error"),
        ("/result/..%2F..%2Fetc%2Fpasswd", 404, "not_found"),
        ("/no-such-route", 404, "not_found"),
    ],
)
def test_unknown_and_malformed_ids(client: httpx.Client, path: str, status: int, code: str) -> None:
    assert_error(client.get(path), status, code)


def test_image_the_worker_cannot_decode_fails_permanently(
    stack: httpx.Client, wait_done: WaitDone
) -> None:
    response = post(stack, "grayscale", png_with_broken_pixels(), "broken.png")
    assert response.status_code == 202, "its header and structure are valid"
    status = wait_done(stack, response.json()["task_id"])
    assert status["status"] == "failed" and status["attempts"] == 1, "a bad image is not retried"
    assert "cannot be decoded" in status["error"], status["error"]
    assert_error(stack.get(f"/result/{status['task_id']}"), 410, "task_failed", "failed")


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
