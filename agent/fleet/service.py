"""What the daemon and the CLI both do with a config: one status round, the outbox and the
upstream it names, and the Prometheus textfile of a committed heartbeat.

``posagent run`` (the daemon), ``posagent run --once`` and ``posagent heartbeat`` use these,
so a heartbeat is made, stored and sent the same way whoever asks for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from posagent.config.model import Config
from posagent.core import power
from posagent.drivers.system import snapshot
from posagent.fleet import prom
from posagent.fleet.messages import DeviceResults
from posagent.fleet.outbox import Outbox
from posagent.fleet.outbox_recover import Recovery
from posagent.fleet.outbox_safe import SafeOutbox
from posagent.fleet.transport import OnCommand, Transport, open_transport
from posagent.fleet.upstream import RetryPolicy, UpstreamError
from posagent.selftest.runner import Runner

# These lines were the daemon loop's before they were shared; they keep its logger name, so
# journal filters and log searches (``posagent.daemon.loop: system figures unavailable``) still match.
log = logging.getLogger("posagent.daemon.loop")


def status_round(runner: Runner, config: Config) -> tuple[DeviceResults, dict[str, Any]]:
    """Every device's status (concurrently, each cut at its timeout) and the system figures."""
    results = runner.status()
    try:
        system = snapshot(config.agent.state_dir)
    except Exception as e:  # psutil oddities must not cost the heartbeat
        log.warning("system figures unavailable: %s", e)
        system = {}
    boots = power.load(config.agent.state_dir)
    if boots:  # what the daemon recorded of the box's boots (power-cycle hygiene)
        system.update(power.summary(boots, time.time()).fields())
    return results, system


def open_outbox(config: Config) -> Outbox:
    """The outbox in the config's state dir, with its size and age bounds. Raises OutboxError."""
    up = config.upstream
    return Outbox(config.agent.state_dir, max_bytes=int(up.spool_max_mb * 2**20), max_age=float(up.spool_max_age))


def open_safe_outbox(config: Config, on_recovered: Callable[[Recovery], None] | None = None) -> SafeOutbox:
    """The daemon's outbox: the file, or memory while the file cannot be used (full disk,
    read-only state dir); never raises for the state dir's sake (``fleet/outbox_safe.py``)."""
    up = config.upstream
    return SafeOutbox(config.agent.state_dir, max_bytes=int(up.spool_max_mb * 2**20),
                      max_age=float(up.spool_max_age), on_recovered=on_recovered)


def make_upstream(config: Config, policy: RetryPolicy | None = None,
                  on_command: OnCommand | None = None) -> tuple[Transport | None, str | None]:
    """(transport, problem): no URL configured is (None, None); a bad setting is (None, reason).
    ``on_command`` gets every remote command token the upstream sends (fleet/commands.py)."""
    if not config.upstream.all_urls():
        return None, None
    try:
        return open_transport(config.upstream, terminal_id=config.agent.terminal_id,
                              policy=policy or RetryPolicy(), on_command=on_command), None
    except UpstreamError as e:
        return None, str(e)


def export_prometheus(path: str, heartbeat: dict[str, Any]) -> None:
    """Write a committed heartbeat to the Prometheus textfile ``path``; never raises."""
    try:
        prom.write_textfile(path, heartbeat)
    except Exception as e:
        log.warning("prometheus textfile %s not written: %s", path, e)
