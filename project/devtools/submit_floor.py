"""Submit path against its floor (`make bench-project`, part 2): our API vs bench/floor_app.py.

Both servers run side by side (one uvicorn process each, no worker). A closed-loop client keeps
`connections` keep-alive connections busy with `POST /resize`, each a new job: a 232 KB JPEG made
unique by a comment segment (a new blob to hash, store and fsync, as a new photo would be) and a
width of its own. The client talks to one server at a time, in windows that alternate between
the two (ours, floor, ours, floor, ...), so both see the same machine; each window counts the
answers and the server process's CPU time (/proc, user + system).

Optional further sides are floor_app.py with the guarantees (the least any service that keeps
our promises must do per upload) and with our features as well, each the cheapest way (see
floor_app.py).

The client is a few lines of asyncio over raw sockets rather than locust: locust's own CPU per
request (it builds each multipart body) would take most of the two cores from the servers.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devtools.launch import Child, settings_env
from imgproc.config import Settings
from shared.testing.process import http_ok

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def start_floor(
    settings: Settings,
    log_path: Path,
    *,
    port: int,
    guarantees: bool = False,
    features: bool = False,
    timeout: float = 60,
) -> Child:
    """Start floor_app.py under uvicorn on 127.0.0.1:`port` with the service's environment.

    `guarantees`: the floor of a service that keeps our promises; `features`: that, and our
    API's features per upload, each the cheapest way (see floor_app.py).
    """
    args = [
        sys.executable, "-m", "uvicorn", "--factory", "floor_app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    env = settings_env(settings)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), env["PYTHONPATH"]])
    env["FLOOR_GUARANTEES"] = "1" if guarantees or features else "0"
    env["FLOOR_FEATURES"] = "1" if features else "0"
    name = "features" if features else "promise" if guarantees else "floor"
    child = Child(name, args, env, log_path).start()
    return child.wait_until(
        http_ok(f"http://127.0.0.1:{port}/healthz", below=300), timeout=timeout, what="healthz"
    )


def unique_jpegs(jpeg: bytes, start: int = 0) -> Iterator[tuple[bytes, bytes, bytes]]:
    """The same photo again and again, each copy different bytes: (head, comment, rest).

    A JPEG comment segment (COM, 0xFFFE) right after the start-of-image marker carries a
    counter; decoders ignore it, the SHA-256 changes.
    """
    head, rest = jpeg[:2], jpeg[2:]
    for n in itertools.count(start):
        payload = f"bench upload {n:012d}".encode()
        yield head, b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload, rest


@dataclass
class Side:
    """One server under test, and what its windows measured."""

    name: str
    port: int
    pid: int
    cpu: Callable[[int], float]
    windows: list[tuple[int, float, float]] = field(default_factory=list)  # (answers, s, cpu s)
    failures: int = 0

    @property
    def answers(self) -> int:
        return sum(n for n, _, _ in self.windows)

    @property
    def rate(self) -> float:
        return self.answers / sum(t for _, t, _ in self.windows)

    @property
    def cpu_per_request(self) -> float:
        return sum(c for _, _, c in self.windows) / max(1, self.answers)


class Client:
    """Closed-loop HTTP/1.1 client: `connections` sockets per side, one request in flight each."""

    def __init__(self, jpeg: bytes, connections: int) -> None:
        self.uploads = unique_jpegs(jpeg)
        self.widths = itertools.count()
        self.connections = connections
        self.streams: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    def _request(self, port: int) -> list[bytes]:
        n = next(self.widths)
        width, height = 1 + n % 1500, 1 + n // 1500 % 1000  # a new request key every time
        boundary = uuid.uuid4().hex
        head, comment, rest = next(self.uploads)
        fields = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in (("width", width), ("height", height))
        )
        part = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        body = [fields, part, head, comment, rest, tail]
        length = sum(map(len, body))
        start = (
            f"POST /resize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        return [start, *body]

    async def _connect(self, side: Side) -> None:
        """Fresh connections for each window: a server closes the ones left idle meanwhile
        (uvicorn after 5 s), and with three sides a connection waits two windows."""
        for _, writer in self.streams.pop(side.name, []):
            writer.close()
        self.streams[side.name] = [
            await asyncio.open_connection("127.0.0.1", side.port) for _ in range(self.connections)
        ]

    async def _loop(
        self,
        side: Side,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
    ) -> int:
        done = 0
        while time.perf_counter() < deadline:
            writer.writelines(self._request(side.port))
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError(f"{side.name} closed a connection instead of answering")
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status_line.split()[1] in (b"200", b"202"):
                done += 1
            else:
                side.failures += 1
        return done

    async def window(self, side: Side, seconds: float) -> None:
        """Keep `side` busy for `seconds`; record its answers and CPU time."""
        await self._connect(side)
        await asyncio.sleep(0.05)  # the server's accepts, outside the window's CPU time
        cpu_before, started = side.cpu(side.pid), time.perf_counter()
        deadline = started + seconds
        counts = await asyncio.gather(
            *(self._loop(side, r, w, deadline) for r, w in self.streams[side.name])
        )
        elapsed = time.perf_counter() - started
        side.windows.append((sum(counts), elapsed, side.cpu(side.pid) - cpu_before))

    async def close(self) -> None:
        for streams in self.streams.values():
            for _, writer in streams:
                writer.close()


def compare(
    sides: list[Side], jpeg: bytes, *, rounds: int, seconds: float, connections: int
) -> None:
    """Alternate windows (one per side, in order) for `rounds` rounds, after a warm-up."""

    async def run() -> None:
        client = Client(jpeg, connections)
        try:
            for side in sides:  # connections, caches, the allocator; not counted
                await client.window(side, min(1.0, seconds))
                side.windows.clear()
                side.failures = 0
            for _ in range(rounds):
                for side in sides:
                    await client.window(side, seconds)
        finally:
            await client.close()

    asyncio.run(run())


def ratio_by_thirds(ours: Side, floor: Side) -> list[float]:
    """Throughput ratio in each third of the rounds (each side against its own windows)."""
    out = []
    count = len(ours.windows)
    for part in range(3):
        a, b = part * count // 3, (part + 1) * count // 3
        mine = ours.windows[a:b]
        theirs = floor.windows[a:b]
        if mine and theirs:
            rate = sum(n for n, _, _ in mine) / sum(t for _, t, _ in mine)
            base = sum(n for n, _, _ in theirs) / sum(t for _, t, _ in theirs)
            out.append(rate / base)
    return out
