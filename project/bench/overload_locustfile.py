"""Locust load for `bench/overload.py`: POST /resize of a 1600x1200 JPEG at a fixed offered rate.

Each user waits an exponentially distributed time (mean 1/BENCH_USER_RATE s), so arrivals are
Poisson-like; each request asks for a new box (`overload_params`: a new job, never a
de-duplicated one). Every
answer's start (seconds into the run), status and time go to BENCH_RESULT_FILE (JSON) when
locust quits, so the bench can take the p99 of the accepted requests apart from the refused
ones, and leave the first seconds (users connecting, pools growing) out.

The load generator shares the machine's two cores with the service, so it must be cheap:
FastHttpUser (geventhttpclient) and a multipart body assembled from pre-encoded parts, rather
than `requests` encoding 230 KB per request (which cost more CPU than the API's own work).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from devtools.samples import encode, overload_params, photo_like
from locust import FastHttpUser, events, task

IMAGE = encode(photo_like(1600, 1200, seed=42), "JPEG", quality=90)  # ~230 KB, as bench.py
RATE = float(os.environ.get("BENCH_USER_RATE", "1"))
RESULT_FILE = Path(os.environ.get("BENCH_RESULT_FILE", "overload-result.json"))
_n = itertools.count()
_seen: list[tuple[float, int, float]] = []  # (started, s since the first; status; ms)


@events.request.add_listener  # type: ignore[untyped-decorator]  # locust is untyped here
def _record(response: Any = None, response_time: float = 0.0, **_: Any) -> None:
    started = time.monotonic() - response_time / 1000
    _seen.append((started, response.status_code if response is not None else 0, response_time))


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write(**_: Any) -> None:
    first = min((started for started, _, _ in _seen), default=0.0)
    RESULT_FILE.write_text(json.dumps([(t - first, status, ms) for t, status, ms in _seen]))


BOUNDARY = "imgproc-overload-bench"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
_FILE_PART = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    + IMAGE
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)


def body(fields: dict[str, str]) -> bytes:
    """A multipart/form-data body: the form fields, then the (pre-encoded) file part."""
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    return head.encode() + _FILE_PART


class Submitter(FastHttpUser):
    def wait_time(self) -> float:
        return random.expovariate(RATE)

    @task
    def resize(self) -> None:
        # 202 accepted; 429/503 are the protection working, not errors of the service.
        with self.client.post(
            "/resize",
            # Bytes are sent as they are (the docstring says "String/bytes"; the hint is narrower).
            data=body(overload_params(next(_n))),  # type: ignore[arg-type]
            headers={"Content-Type": CONTENT_TYPE},
            name="/resize",
            catch_response=True,
        ) as response:
            if response.status_code in (200, 202, 429, 503):
                response.success()
