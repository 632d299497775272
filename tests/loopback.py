"""A TCP server on 127.0.0.1 for the tests' own peers (a slow HTTP server, a hostile upsd,
a byte-counting relay): it accepts until closed and runs ``handler(conn, stop)`` in a
thread per connection, optionally behind TLS. The handler owns the connection's protocol;
the socket is closed after it returns."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable

Handler = Callable[[socket.socket, threading.Event], None]


class LoopbackServer:
    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None, *, slice_s: float = 0.2) -> None:
        self.handler = handler
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(slice_s)  # how soon close() is seen by the accept loop
        self.port: int = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.connections: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            th = threading.Thread(target=self._one, args=(conn,), daemon=True)
            th.start()
            self.connections.append(th)

    def _one(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.handler(conn, self.stop)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self, *, join_connections: bool = False) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(2.0)
        if join_connections:
            for th in self.connections:
                th.join(2.0)
