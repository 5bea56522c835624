"""The TCP proxy the outage tests put in front of a shared service: stall, resume, cut."""

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from shared.testing.tcp_proxy import TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A tiny echo server on a free port (stands in for a broker or a database)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def test_a_stall_holds_the_bytes_until_resumed_and_a_cut_resets(echo_port: int):
    with TcpProxy("127.0.0.1", echo_port) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        client.sendall(b"one")
        assert client.recv(16) == b"one"

        proxy.stall()
        client.sendall(b"two")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(16)  # the connection is open, but nothing comes back
        proxy.resume()
        client.settimeout(5)
        assert client.recv(16) == b"two", "the held bytes arrive once resumed"

        proxy.stall()
        proxy.cut()  # a cut ends a stall too: the client learns at once
        # An end of stream or a reset: either way the client is not left waiting.
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(16) == b"", "end of stream"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
        proxy.restore()
        again = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        again.sendall(b"three")
        assert again.recv(16) == b"three"
        again.close()
        client.close()
