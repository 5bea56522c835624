"""Traffic that gives every dashboard panel something to show: jobs of every operation (new
ones and identical repeats), a job the worker cannot decode, refused requests, status polls.

Used by the dashboard test and by `render.py --demo`. Needs `PYTHONPATH=project:.` (it makes its
images with the capstone's `devtools.samples`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from devtools.samples import encode, photo_like, png_with_broken_pixels

FINAL = ("done", "failed")


@dataclass
class Traffic:
    """What was sent, to check against what the dashboards show."""

    task_ids: list[str] = field(default_factory=list)
    by_operation: dict[str, int] = field(default_factory=dict)
    repeats: int = 0
    failing: int = 0
    refused: int = 0

    def add(self, operation: str, response: httpx.Response) -> None:
        assert response.status_code in (200, 202), response.text
        body = response.json()
        if body["cache_hit"]:
            self.repeats += 1
        else:
            self.task_ids.append(body["task_id"])
            self.by_operation[operation] = self.by_operation.get(operation, 0) + 1


def submit(
    client: httpx.Client, operation: str, data: bytes, name: str, **fields: int
) -> httpx.Response:
    return client.post(
        f"/{operation}",
        files={"file": (name, data)},
        data={k: str(v) for k, v in fields.items()},
    )


def one_round(client: httpx.Client, traffic: Traffic, n: int, *, size: tuple[int, int]) -> None:
    """One job of each operation on a new image, a repeat, a refused request, status polls."""
    width, height = size
    jpeg = encode(photo_like(width, height, seed=1000 + n), "JPEG", quality=90)
    png = encode(photo_like(width // 2, height // 2, seed=2000 + n), "PNG")
    traffic.add("resize", submit(client, "resize", jpeg, "a.jpg", width=width // 3))
    traffic.add("grayscale", submit(client, "grayscale", png, "b.png"))
    crop = {"left": 0, "top": 0, "width": width // 2, "height": height // 2}
    traffic.add("crop", submit(client, "crop", jpeg, "a.jpg", **crop))
    # The same request again: answered by the existing job (dedup cache hit).
    traffic.add("resize", submit(client, "resize", jpeg, "a.jpg", width=width // 3))
    # A crop box outside the image: 422, nothing stored.
    bad = submit(client, "crop", png, "b.png", left=width, top=0, width=10, height=10)
    assert bad.status_code == 422, bad.text
    traffic.refused += 1
    assert client.get("/task-status/00000000-0000-4000-8000-000000000000").status_code == 404
    for task_id in traffic.task_ids[-6:]:
        client.get(f"/task-status/{task_id}")


def send_failing(client: httpx.Client, traffic: Traffic) -> None:
    """A PNG the API accepts (valid header and structure) that the worker cannot decode."""
    response = submit(client, "grayscale", png_with_broken_pixels(), "broken.png")
    assert response.status_code == 202, response.text
    traffic.task_ids.append(response.json()["task_id"])
    traffic.failing += 1


def drive(
    client: httpx.Client,
    *,
    rounds: int,
    pause: float,
    size: tuple[int, int] = (320, 240),
    burst_every: int = 0,
    burst: int = 0,
    burst_size: tuple[int, int] = (160, 120),
    on_round: Callable[[int], None] | None = None,
) -> Traffic:
    """`rounds` rounds `pause` seconds apart; every `burst_every` rounds `burst` extra resize jobs
    of small images at once (a queue that builds up and drains); one failing job in the middle."""
    traffic = Traffic()
    for n in range(rounds):
        one_round(client, traffic, n, size=size)
        if n == rounds // 2:
            send_failing(client, traffic)
        if burst_every and n % burst_every == burst_every - 1:
            photo = encode(photo_like(*burst_size, seed=3000 + n), "JPEG", quality=90)
            # Four clients at once, as a real burst: faster than one worker node drains it.
            with ThreadPoolExecutor(4) as pool:
                sizes = [20 + k for k in range(burst)]
                responses = pool.map(
                    lambda width, data=photo: submit(client, "resize", data, "c.jpg", width=width),
                    sizes,
                )
                for response in list(responses):
                    traffic.add("resize", response)
        if on_round is not None:
            on_round(n)
        time.sleep(pause)
    return traffic


def wait_final(client: httpx.Client, traffic: Traffic, timeout: float = 60) -> dict[str, int]:
    """Poll until every job is done or failed; return the count of each final status."""
    deadline = time.monotonic() + timeout
    pending = list(traffic.task_ids)
    counts = {"done": 0, "failed": 0}
    while pending and time.monotonic() < deadline:
        still = []
        for task_id in pending:
            status = client.get(f"/task-status/{task_id}").json()["status"]
            if status in FINAL:
                counts[status] += 1
            else:
                still.append(task_id)
        pending = still
        if pending:
            time.sleep(0.2)
    if pending:
        raise TimeoutError(f"{len(pending)} jobs still unfinished after {timeout:.0f}s")
    return counts
