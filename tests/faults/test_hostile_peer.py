"""#18: text quoted from a peer's reply is scrubbed of anything the agent sent it. A hostile
(or broken) upsd on loopback that echoes the password back in its error replies and in its
UPS names: the password reaches no message, no measurement, no log line, no CLI output.
(A real upsd never echoes it; this peer is the test's own, speaking upsd's line protocol.)"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.loopback import LoopbackServer

PASSWORD = "pa#ss?w/rd@99"


class EchoingUpsd:
    """Accepts connections; answers USERNAME/PASSWORD with OK, LIST UPS with one UPS named
    after the password, and every GET with ``ERR ACCESS-DENIED <the password>``."""

    def __init__(self) -> None:
        self.server = LoopbackServer(self._talk)
        self.port = self.server.port

    def _talk(self, conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5.0)
        with conn, conn.makefile("rwb", buffering=0) as f:
            for _ in range(50):  # bounded: a client says a few lines at most
                line = f.readline().decode("utf-8", "replace").strip()
                if not line:
                    return
                word = line.split(" ", 1)[0]
                if word in ("USERNAME", "PASSWORD", "LOGIN"):
                    reply = "OK"
                elif word == "LOGOUT":
                    f.write(b"OK Goodbye\n")
                    return
                elif line == "LIST UPS":
                    reply = f'BEGIN LIST UPS\nUPS {PASSWORD} "echo"\nEND LIST UPS'
                else:
                    reply = f"ERR ACCESS-DENIED {PASSWORD}"
                f.write(reply.encode() + b"\n")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def upsd() -> Iterator[EchoingUpsd]:
    peer = EchoingUpsd()
    yield peer
    peer.close()


def test_a_password_echoed_by_upsd_reaches_no_output(upsd: EchoingUpsd, tmp_path: Path,
                                                     write_config: Callable[..., Path]) -> None:
    from urllib.parse import quote

    url = f"nut://monitor:{quote(PASSWORD, safe='')}@127.0.0.1:{upsd.port}/ups"
    for ups in ("ups", "missing"):
        cfg = write_config(f'[[device]]\nname = "ups"\ndriver = "nut"\nurl = "{url.replace("/ups", "/" + ups)}"\n')
        for args in (["status", "--json"], ["status"], ["selftest", "--json", "--level", "internal"],
                     ["heartbeat", "--json"], ["config", "check"]):
            out = run_cli("--debug", *args, "--config", str(cfg))  # its debug log lines too
            text = out.stdout + out.stderr
            assert PASSWORD not in text and quote(PASSWORD, safe="") not in text, (args, text[-800:])
            assert "Traceback" not in text
        status = json.loads(run_cli("status", "--json", "--config", str(cfg)).stdout)
        dev = status["devices"]["ups"]
        assert dev["status"] == "unknown" and "***" in json.dumps(dev), dev
