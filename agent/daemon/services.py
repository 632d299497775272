"""The daemon's collaborators for one config, built in one place.

``build(config, env)`` returns the ``Services`` the main loop works with: the devices and
their ``Runner``, the outbox, the delivery thread (started) and the ``Reporter`` that
commits to them. ``env`` holds what outlives a config: the sd_notify ``Notifier``, the
agent's state, the loop's wake-up and the startup hold.

At start (no previous services) the outbox is opened first; a state dir the agent cannot
write (read-only, full) does not stop the start: reports are kept in memory and sent
from there until the state dir can be used again (``fleet/outbox_safe.py``). On a reload the old
devices are closed first (``posagent.daemon.reload``), then ``build(new, env, previous)``
opens the new devices; the outbox and the delivery are replaced only when the state dir
changed (a new state dir that cannot be opened is logged and the old one kept), otherwise
they stay, with the new bounds and the new upstream.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from posagent.config.model import Config
from posagent.core.base import Result
from posagent.daemon.reporter import Reporter
from posagent.daemon.sdnotify import Notifier
from posagent.fleet import schedule
from posagent.fleet.delivery import Delivery, DeliveryPolicy
from posagent.fleet.messages import AgentState
from posagent.fleet.outbox import Store
from posagent.fleet.outbox_recover import Recovery
from posagent.fleet.service import make_upstream, open_safe_outbox
from posagent.fleet.transport import OnCommand
from posagent.selftest.devices import DeviceSet, Notify
from posagent.selftest.runner import Runner

log = logging.getLogger("posagent.daemon.loop")  # the daemon's lines keep the loop's logger name

STOP_GRACE = 5.0  # seconds a running check may take to finish on SIGTERM before it is abandoned


class StartupHold:
    """``startup_jitter``: after any start, nothing reaches the upstream before ``until``.

    ``start()`` decides, once, at the daemon's start (once the devices are open): a random
    delay, whether the system itself has just booted or only the agent restarted (a package
    update or a fleet-wide restart starts every agent in the same second). The hold applies
    to the delivery (the outbox backlog), the first heartbeat and a catch-up self-test alike.
    """

    def __init__(self, booted: Callable[[str], bool], rng: random.Random) -> None:
        self._booted = booted
        self._rng = rng
        self.until = 0.0  # time.monotonic()

    def start(self, config: Config) -> None:
        booted = self._booted(config.agent.state_dir)
        delay = schedule.startup_delay(config.schedule, self._rng)
        self.until = time.monotonic() + delay
        if delay:
            log.info("%s: the first heartbeat, the outbox backlog and any catch-up self-test wait %.0f s "
                     "(startup_jitter)", "system just booted" if booted else "agent started", delay)

    def left(self) -> float:
        """Seconds the reports still wait."""
        return max(0.0, self.until - time.monotonic())


@dataclass
class Env:
    """What every build shares and what outlives a reload."""

    notifier: Notifier
    state: AgentState
    wake: Callable[[], None]  # wake the main loop (the delivery calls it when something changed)
    hold: StartupHold
    delivery_policy: DeliveryPolicy | None = None
    notify: Notify | None = None  # where the devices' services report (Driver.serve)
    on_command: OnCommand | None = None  # where the upstream hands remote command tokens (daemon/commands.py)


@dataclass
class Services:
    """The collaborators of one config."""

    config: Config
    devices: DeviceSet
    runner: Runner
    outbox: Store
    delivery: Delivery
    reporter: Reporter


def build(config: Config, env: Env, previous: Services | None = None) -> Services:
    """The services of ``config`` (see the module doc). ``previous``: the services being
    replaced on a reload, whose devices are already closed; the new ones take over its outbox
    and delivery (or close them)."""
    outbox = open_safe_outbox(config, _recovered(env)) if previous is None else previous.outbox
    if previous is None and outbox.recovered is not None and env.notify is not None:
        env.notify("outbox", "posagent", recovery_result(outbox.recovered))
    devices = open_devices(config, env.notify)
    try:
        if previous is None:
            env.hold.start(config)
            delivery = start_delivery(config, outbox, env)
        elif config.agent.state_dir != previous.config.agent.state_dir:
            config, outbox, delivery = _move_state_dir(config, previous, env)
        else:
            delivery = previous.delivery
            outbox.set_limits(int(config.upstream.spool_max_mb * 2**20), float(config.upstream.spool_max_age))
            upstream, problem = make_upstream(config, on_command=env.on_command)
            if problem:
                log.error("upstream not usable: %s; reports are kept in the outbox", problem)
            env.state.last_error = problem
            delivery.replace_upstream(upstream)
    except BaseException:  # e.g. not even the old state dir opens again: the daemon stops, so close what it holds
        close_devices(devices).join(STOP_GRACE)
        if previous is not None:
            previous.delivery.stop(STOP_GRACE)
        outbox.close()
        raise
    reporter = Reporter(config, outbox, delivery, env.notifier, env.state)
    return Services(config, devices, Runner(devices), outbox, delivery, reporter)


def recovery_result(r: Recovery) -> Result:
    """A damaged outbox that was replaced at open, as the event the fleet receives."""
    return Result.warn("STATE_STORE_RECOVERED",
                       f"the outbox was damaged ({r.reason}) and replaced: {r.salvaged} messages saved from it; "
                       f"the damaged file is kept as {os.path.basename(r.aside)}",
                       measurements={"salvaged": r.salvaged, "seq_mark": r.seq_mark},
                       facts={"aside": os.path.basename(r.aside), "reason": "damaged"})


def open_devices(config: Config, notify: Notify | None = None) -> DeviceSet:
    """Build every device of this config (drivers opened, simulators started on first use,
    what devices serve started when ``notify`` is given)."""
    devices = DeviceSet(config, notify)
    for name in devices.names():
        devices.get(name)
    return devices


def start_delivery(config: Config, outbox: Store, env: Env) -> Delivery:
    """A delivery thread from ``outbox`` to the config's upstream, held back by the startup hold."""
    upstream, problem = make_upstream(config, on_command=env.on_command)
    if problem:
        log.error("upstream not usable: %s; reports are kept in the outbox", problem)
        env.state.last_error = problem
    elif upstream is None:
        log.warning("no upstream url configured: reports are kept in the outbox (bounded)")
    delivery = Delivery(outbox, upstream, env.state, policy=env.delivery_policy, on_change=env.wake)
    delivery.start(hold=env.hold.left())
    return delivery


def _move_state_dir(config: Config, previous: Services, env: Env) -> tuple[Config, Store, Delivery]:
    """A reload to another state dir: the outbox there, or the old one if it cannot be opened."""
    previous.delivery.stop(STOP_GRACE)
    previous.outbox.close()
    outbox = open_safe_outbox(config, _recovered(env))
    if outbox.unavailable is not None:
        log.error("the new state dir %s cannot be used (%s); keeping the old state dir",
                  config.agent.state_dir, outbox.unavailable)
        outbox.close()
        config = dataclasses.replace(config, agent=dataclasses.replace(
            config.agent, state_dir=previous.config.agent.state_dir))
        outbox = open_safe_outbox(config, _recovered(env))
    return config, outbox, start_delivery(config, outbox, env)


def _recovered(env: Env) -> Callable[[Recovery], None] | None:
    """What tells the fleet that the outbox was found damaged while the agent ran."""
    notify = env.notify
    if notify is None:
        return None
    return lambda r: notify("outbox", "posagent", recovery_result(r))


def close_devices(devices: DeviceSet) -> threading.Thread:
    """Close ``devices`` in a thread of its own (a port that does not let go must not stop
    the loop); the caller joins it with a deadline."""
    closer = threading.Thread(target=devices.close, name="close-devices", daemon=True)
    closer.start()
    return closer
