"""A TCP proxy a test can cut and restore: an outage of a shared service, for one test only.

Tests must never stop the machine's PostgreSQL, Redis or RabbitMQ (other runs use them). To
see what a service does when its broker or database goes away, point it at a `TcpProxy` in
front of the real server and cut the proxy:

    with TcpProxy("127.0.0.1", 5672) as proxy:
        start_service(amqp_url=proxy.url_for("amqp://guest:guest@127.0.0.1:5672/%2F"))
        proxy.cut()       # every open connection is reset, new ones are refused
        ...
        proxy.restore()   # the same port accepts connections again

A cut closes both ends of every connection (the client sees a reset or an EOF at once, as
when the server process dies) and closes the listening socket (new connections are refused,
as when nothing listens). The port is kept free for `restore()`, which listens on it again.

A service can also hang rather than die (a full disk, a long pause, a frozen VM): `stall()`
keeps every connection open but lets no byte through until `resume()`. A client that waits
for an answer without a timeout then waits as long as the stall.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit

from shared.testing.process import free_port

CHUNK = 65536


class TcpProxy:
    """Forward 127.0.0.1:<port> to host:port in threads; `cut()` and `restore()` at will."""

    def __init__(self, host: str, port: int, *, listen_port: int | None = None) -> None:
        self.target = (host, port)
        self.port = listen_port or free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()  # cleared while stalled
        self._flowing.set()
        self.connections = 0  # accepted since the start, for tests that want to know

    @property
    def up(self) -> bool:
        return self._listener is not None

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def restore(self) -> TcpProxy:
        """Listen again after a cut (a no-op while up)."""
        return self if self.up else self.start()

    def stall(self) -> None:
        """Hold every byte in both directions (connections stay open) until `resume()`."""
        self._flowing.clear()

    def resume(self) -> None:
        """Let the held bytes and everything after them through again."""
        self._flowing.set()

    def cut(self) -> None:
        """Refuse new connections and reset every open one (a stall ends with them)."""
        self.resume()  # a stalled forwarder wakes up, finds its sockets reset and ends
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            reset_socket(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                reset_socket(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    reset_socket(client)
                    reset_socket(upstream)
                    return
                self._sockets.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(CHUNK):
                # Held here while stalled: the bytes wait in the kernel's buffers, as in a
                # hung peer's.
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            reset_socket(src)
            reset_socket(dst)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cut()


def reset_socket(sock: socket.socket) -> None:
    """Close `sock` as a crashed peer would (a reset), waking a thread blocked on it."""
    # shutdown() first: it wakes the thread blocked in recv() on this socket (a bare close()
    # would leave the kernel socket open until that recv returned, and the peer unaware).
    # SO_LINGER 0 makes the close a reset, as from a crashed peer.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
