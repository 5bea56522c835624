"""A TCP server that stands in for a service that is up but broken, which a closed port
cannot show: it accepts connections and then never answers ("hang"), drops each one at once
("reset"), or passes them on to the real service ("forward"). The mode can change at any time.

    with FaultyTcp("hang") as redis_that_hangs:          # accepts, reads, never replies
        start_app(REDIS_URL=redis_that_hangs.url("redis") + "/0")
    with FaultyTcp("forward", target=8001) as pricing:   # a proxy in front of port 8001
        pricing.set_mode("reset")                        # now reads a request, then resets
        pricing.connections, pricing.first_lines         # e.g. "GET /price/7?... HTTP/1.1"

The client speaks first (HTTP, Redis): the first chunk it sends is read before the mode acts.
A client without a timeout waits forever on a "hang" server: that is what the tests catch.
`set_mode` and `close` drop every open connection, so a client waiting on one wakes up.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

from shared.testing.tcp_proxy import reset_socket

Mode = Literal["hang", "reset", "forward"]
CHUNK = 65536


class FaultyTcp:
    """Listen on 127.0.0.1:<free port>; count connections; hang, reset or forward each one."""

    def __init__(self, mode: Mode, *, target: int | None = None) -> None:
        if mode == "forward" and target is None:
            raise ValueError("forward needs a target port")
        self.mode: Mode = mode
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.connections = 0  # accepted since the start
        self.first_lines: list[str] = []  # the first line each connection sent

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> FaultyTcp:
        self._listener.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def set_mode(self, mode: Mode) -> None:
        """Treat new connections this way from now on; drop the open ones."""
        if mode == "forward" and self.target is None:
            raise ValueError("forward needs a target port")
        with self._lock:
            self.mode = mode
        self._drop_open()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._drop_open()

    def _drop_open(self) -> None:
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            reset_socket(sock)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.connections += 1
                self._open.add(conn)
                mode = self.mode
            threading.Thread(target=self._serve, args=(conn, mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: Mode) -> None:
        upstream: socket.socket | None = None
        try:
            first = conn.recv(CHUNK)
            with self._lock:
                self.first_lines.append(first.split(b"\r\n", 1)[0].decode(errors="replace"))
            if mode == "reset" or not first:
                return
            if mode == "hang":
                while conn.recv(CHUNK):  # read whatever comes, answer nothing
                    pass
                return
            assert self.target is not None
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self._open.add(upstream)
            upstream.sendall(first)
            back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
            back.start()
            _pipe(conn, upstream)
            back.join()
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
                if upstream is not None:
                    self._open.discard(upstream)
            reset_socket(conn)
            if upstream is not None:
                reset_socket(upstream)

    def __enter__(self) -> FaultyTcp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        # One side ended: end the other too, so both pipes of the connection stop.
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
