"""A small real HTTP collector on 127.0.0.1 for the delivery tests.

It records every request it receives (path, headers, body, parsed JSON, the status it
answered), as a real collector reads it: a ``Content-Encoding: gzip`` body is decompressed,
and a batch (a JSON array of reports) is recorded as one ``Received`` per report, in order,
each saying which request carried it (``requests`` keeps one entry per request; ``unique()``
is what a collector that dedupes on ``message_id`` keeps). It answers by a script: a queue
of ``Reply`` items (then ``default``), each a status with headers, or ``hang`` (answer only
after ``hang`` seconds, so the client times out), or ``drop`` (close the connection without
an answer), optionally with a ``body`` of its own (``{"commands": [...]}``: remote
commands). ``stop()`` closes the listening socket and every open connection, so "the
collector is down" is real; ``start()`` again on the same port brings it back. Waits use
a Condition with a deadline.
"""

from __future__ import annotations

import gzip
import io
import json
import socket
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait before answering (the client should time out first)
    drop: bool = False  # close the connection without answering
    body: bytes | None = None  # the answer's body (default: {"ok":true} for a 2xx), e.g. {"commands": [...]}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int | None  # what was answered; None for a dropped connection
    at: float  # time.monotonic() when it arrived
    request: int = 0  # the index of the request that carried it (in Collector.requests)
    batch: int = 0  # the number of reports in that request's JSON array; 0: a single object
    wire_bytes: int = 0  # that request's body as it came (compressed or not)
    encoding: str = ""  # its Content-Encoding
    client_port: int = 0  # the client's port: the same one again means a kept connection


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], collector: Collector) -> None:
        self.collector = collector
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) makes the late answer fail: expected here

    def close_all(self) -> None:
        with self.conns_lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body in one write (flushed after each request), as real servers do
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        c = self.server.collector
        length = int(self.headers.get("Content-Length") or 0)
        wire = self.rfile.read(length)
        body = wire
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            try:
                body = gzip.decompress(wire)
            except (OSError, EOFError, zlib.error):
                body = b""
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        self.wire = wire
        reply = c.next_reply()
        if reply.hang:
            c.release.wait(reply.hang)
        if reply.drop:
            c.record(self, body, parsed, None)
            self.close_connection = True
            self.wfile = io.BytesIO()  # nothing buffered may go out
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = reply.body if reply.body is not None else \
            b'{"ok":true}' if 200 <= reply.status < 300 else b'{"error":"scripted"}'
        self.send_response(reply.status)
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        c.record(self, body, parsed, reply.status)


class Collector:
    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls
        self.default = Reply()
        self.received: list[Received] = []  # one per report (a batch gives several)
        self.requests: list[Received] = []  # one per request
        self.release = threading.Event()  # set to end every hang at once
        self._script: deque[Reply] = deque()
        self._cond = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/api/v1/heartbeat"

    def start(self) -> Collector:
        self.release.clear()
        server = _Server(("127.0.0.1", self.port), self)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_all()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- script and records -------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        with self._cond:
            self._script.extend(replies)

    def next_reply(self) -> Reply:
        with self._cond:
            return self._script.popleft() if self._script else self.default

    def record(self, h: _Handler, body: bytes, parsed: Any, status: int | None) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        wire = getattr(h, "wire", body)
        with self._cond:
            request = Received(h.path, headers, body, parsed, status, time.monotonic(), len(self.requests),
                               len(parsed) if isinstance(parsed, list) else 0, len(wire),
                               headers.get("content-encoding", ""), h.client_address[1])
            self.requests.append(request)
            if isinstance(parsed, list):
                for item in parsed:
                    self.received.append(Received(h.path, headers, body, item, status, request.at, request.request,
                                                  request.batch, request.wire_bytes, request.encoding,
                                                  request.client_port))
            else:
                self.received.append(request)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def delivered(self) -> list[dict[str, Any]]:
        """The messages answered with a 2xx."""
        with self._cond:
            return [r.json for r in self.received if r.status is not None and 200 <= r.status < 300]

    def unique(self) -> dict[str, dict[str, Any]]:
        """The messages answered with a 2xx, deduplicated on ``message_id`` as a collector
        does (the agent delivers at least once); the first copy wins."""
        kept: dict[str, dict[str, Any]] = {}
        for m in self.delivered():
            if isinstance(m, dict) and isinstance(m.get("message_id"), str):
                kept.setdefault(m["message_id"], m)
        return kept
