"""The simulator framework: real bytes on a real pseudo-terminal or loopback TCP socket.

A simulator subclasses ``ByteSimulator`` and implements ``on_bytes(data) -> reply``; the
framework serves it on a pty (``os.openpty``; the client opens the slave path with the
same serial code it uses for hardware) or on 127.0.0.1, in a thread of this process or
in ``posagent sim``. Knobs common to every byte simulator:

    latency_ms        delay before each reply
    no_answer         swallow everything, answer nothing
    garbage           answer every request with bytes that are not a valid reply
    drop_after_bytes  hang up (close the pty/socket) after receiving this many bytes
    line_baud         the unit's fixed line speed (pty only; 0: any). While the pty's speed
                      (what the client's termios set: a UART would run at it) is another,
                      the unit hears noise and answers nothing, as on a real line at the
                      wrong baud rate: another program that changed the port's settings
                      under a client holding it open makes the device go silent for it.
"""

from __future__ import annotations

import os
import select
import socket
import termios
import threading
import tty
from dataclasses import dataclass
from typing import Any, ClassVar

from posagent.core.registry import SIMS, available, load_plugin


class SimDisconnect(Exception):
    """Raised by on_bytes to hang up the line."""


@dataclass
class KnobSpec:
    type: type
    default: Any = None
    choices: tuple[str, ...] = ()
    help: str = ""


COMMON_KNOBS: dict[str, KnobSpec] = {
    "latency_ms": KnobSpec(float, 0.0, help="delay before each reply"),
    "no_answer": KnobSpec(bool, False, help="answer nothing"),
    "garbage": KnobSpec(bool, False, help="answer with invalid bytes"),
    "drop_after_bytes": KnobSpec(int, 0, help="hang up after receiving this many bytes (0 = never)"),
    "transport": KnobSpec(str, "pty", ("pty", "tcp"), help="serve on a pty or a loopback TCP port"),
    "line_baud": KnobSpec(int, 0, help="the unit's line speed: at another pty speed it hears noise (0 = any)"),
}


def convert_knob(name: str, spec: KnobSpec, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if spec.type is bool:
        low = raw.lower()
        if low in ("", "1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"knob {name}={raw!r} must be true or false")
    try:
        value = spec.type(raw)
    except ValueError as e:
        kind = {int: "an integer", float: "a number"}.get(spec.type, spec.type.__name__)
        raise ValueError(f"knob {name}={raw!r} must be {kind}") from e
    if spec.choices and value not in spec.choices:
        raise ValueError(f"knob {name}={raw!r} must be one of {', '.join(spec.choices)}")
    return value


class Simulator:
    """Base of all simulators: knob handling and a start() that returns a SimHandle."""

    family: ClassVar[str] = ""
    knobs: ClassVar[dict[str, KnobSpec]] = {}

    def __init__(self, **knobs: Any) -> None:
        specs = self.all_knobs()
        self.k: dict[str, Any] = {name: spec.default for name, spec in specs.items()}
        for name, raw in knobs.items():
            if name not in specs:
                raise ValueError(f"unknown knob '{name}' for sim://{self.family} "
                                 f"(valid: {', '.join(sorted(specs))})")
            self.k[name] = convert_knob(name, specs[name], raw)

    @classmethod
    def all_knobs(cls) -> dict[str, KnobSpec]:
        return dict(cls.knobs)

    def start(self) -> SimHandle:
        raise NotImplementedError


class SimHandle:
    """A running simulator: ``url`` to reach it, ``stop()`` to end it."""

    def __init__(self, sim: Simulator, url: str, stop: Any) -> None:
        self.sim = sim
        self.url = url
        self._stop = stop

    def stop(self) -> None:
        self._stop()


class ByteSimulator(Simulator):
    """A request/reply device over a byte stream."""

    @classmethod
    def all_knobs(cls) -> dict[str, KnobSpec]:
        return {**COMMON_KNOBS, **cls.knobs}

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.received = bytearray()  # everything the client sent, for tests
        self.misheard = 0  # bytes sent at another line speed than line_baud (heard as noise)
        self.lock = threading.Lock()
        self._stop_event = threading.Event()

    # -- to implement ----------------------------------------------------------
    def on_bytes(self, data: bytes) -> bytes:
        """Consume client bytes; return the reply (b"" for none)."""
        raise NotImplementedError

    def garbage_reply(self, data: bytes) -> bytes:
        return b"\xff\x00?"

    # -- framework -------------------------------------------------------------
    def _handle(self, data: bytes) -> bytes:
        with self.lock:
            self.received += data
            limit = self.k["drop_after_bytes"]
            if limit and len(self.received) >= limit:
                raise SimDisconnect()
            reply = self.on_bytes(data)
            if self.k["no_answer"]:
                return b""
            if self.k["garbage"] and reply:
                return self.garbage_reply(data)
            return reply

    def _hears(self, fd: int) -> bool:
        """Whether the unit hears the client: the pty runs at its ``line_baud`` (a pty
        master reads and sets the termios of its slave side)."""
        want = int(self.k["line_baud"])
        if want <= 0:
            return True
        try:
            speed = termios.tcgetattr(fd)[5]  # ospeed: what the client's UART would send at
        except termios.error:
            return True
        return bool(speed == getattr(termios, f"B{want}", None))

    def _delay(self) -> bool:
        """Simulated device latency; returns False when asked to stop meanwhile."""
        ms = self.k["latency_ms"]
        if ms:
            return not self._stop_event.wait(ms / 1000.0)
        return True

    def start(self) -> SimHandle:
        if self.k["transport"] == "tcp":
            return self._start_tcp()
        return self._start_pty()

    def _start_pty(self) -> SimHandle:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are
        path = os.ttyname(slave)
        wake_r, wake_w = os.pipe()
        thread = threading.Thread(target=self._serve_fd, args=(master, wake_r), daemon=True,
                                  name=f"sim-{self.family}")
        thread.start()

        def stop() -> None:
            self._stop_event.set()
            try:
                os.write(wake_w, b"x")
            except OSError:
                pass
            thread.join(2.0)
            for fd in (slave, wake_w, wake_r):
                try:
                    os.close(fd)
                except OSError:
                    pass

        # Keep the slave open on our side so the pty survives client reopen (like hardware).
        return SimHandle(self, f"serial://{path}", stop)

    def _serve_fd(self, fd: int, wake: int) -> None:
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        poll.register(wake, select.POLLIN)
        try:
            while not self._stop_event.is_set():
                events = poll.poll()
                if any(f == wake for f, _ in events):
                    return
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                if not self._hears(fd):
                    with self.lock:
                        self.misheard += len(data)
                    continue
                try:
                    reply = self._handle(data)
                except SimDisconnect:
                    return
                if reply and self._delay():
                    os.write(fd, reply)
        finally:
            try:
                os.close(fd)
            except OSError:
                pass

    def _start_tcp(self) -> SimHandle:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        wake_r, wake_w = os.pipe()

        def serve() -> None:
            poll = select.poll()
            poll.register(srv.fileno(), select.POLLIN)
            poll.register(wake_r, select.POLLIN)
            while not self._stop_event.is_set():
                events = poll.poll()
                if any(f == wake_r for f, _ in events):
                    return
                conn, _ = srv.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                fd = os.dup(conn.fileno())
                conn.close()
                self._serve_fd(fd, wake_r)

        thread = threading.Thread(target=serve, daemon=True, name=f"sim-{self.family}-tcp")
        thread.start()

        def stop() -> None:
            self._stop_event.set()
            os.write(wake_w, b"x")
            thread.join(2.0)
            srv.close()
            for fd in (wake_r, wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

        return SimHandle(self, f"tcp://127.0.0.1:{port}", stop)


# -- the simulators of every family, registered under the ``posagent.sims`` entry points --
def simulator_class(family: str) -> type[Simulator]:
    """The simulator registered for ``sim://family``; ValueError if none is."""
    cls = load_plugin(SIMS, family)
    if not (isinstance(cls, type) and issubclass(cls, Simulator)):
        raise ValueError(f"simulator sim://{family} is not a posagent Simulator class")
    return cls


def simulator_families() -> list[str]:
    return available(SIMS)


def make_sim(family: str, knobs: dict[str, Any]) -> Simulator:
    return simulator_class(family)(**knobs)


def start_sim(family: str, knobs: dict[str, Any]) -> SimHandle:
    return make_sim(family, knobs).start()
