"""sd_notify datagrams received on real AF_UNIX datagram sockets (path and abstract), and
the watchdog rules (WATCHDOG_PID ours or unset, half of WATCHDOG_USEC)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from posagent.daemon.sdnotify import Notifier, socket_address


def receive(sock: socket.socket) -> str:
    sock.settimeout(5.0)  # a read with a deadline
    return sock.recv(4096).decode("utf-8")


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    yield s, path
    s.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"posagent-test-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    yield s, "@" + name
    s.close()


def test_messages_arrive_on_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="started; 3 devices")
    assert receive(sock) == "READY=1\nSTATUS=started; 3 devices"
    assert n.status("ok: 3 ok; outbox 0 waiting")
    assert receive(sock) == "STATUS=ok: 3 ok; outbox 0 waiting"
    assert n.watchdog()
    assert receive(sock) == "WATCHDOG=1"
    assert n.reloading()
    assert receive(sock) == "RELOADING=1"
    assert n.stopping()
    assert receive(sock) == "STOPPING=1"
    n.close()


def test_messages_arrive_on_an_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, name = abstract_socket
    n = Notifier({"NOTIFY_SOCKET": name})
    assert n.ready()
    assert receive(sock) == "READY=1"
    assert n.status("line one\nline two")  # a status stays one line
    assert receive(sock) == "STATUS=line one line two"
    n.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    n = Notifier({})
    assert not n.enabled and not n.ready() and not n.watchdog()
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "no-such.sock")})
    assert gone.enabled and gone.ready() is False  # logged, not raised
    assert socket_address("vsock:2:1234") is None
    assert socket_address("@x") == b"\0x"


def test_watchdog_interval_only_when_it_is_ours() -> None:
    me = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}).watchdog_interval == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).watchdog_interval is None
    assert Notifier({}).watchdog_interval is None
