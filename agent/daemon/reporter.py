"""The daemon's reports: heartbeat, event and self-test messages committed to the outbox,
and the sinks that go along with them.

A ``Reporter`` is built for one config (``posagent.daemon.services.build``) from the outbox,
the delivery (woken after every commit), the sd_notify ``Notifier`` and the agent's state.
Its sinks: a heartbeat also updates the history's device flags, the Prometheus textfile and
the status line ``systemctl status`` shows; a self-test is also recorded in the history.
The sinks never raise; a report that cannot be saved is logged and kept as the last error.
"""

from __future__ import annotations

import logging
from typing import Any

from posagent.config.model import Config
from posagent.core.base import Result
from posagent.core.status import worst as worst_of
from posagent.daemon.sdnotify import Notifier
from posagent.fleet import history, messages
from posagent.fleet.changes import Change
from posagent.fleet.delivery import Delivery
from posagent.fleet.messages import AgentState, DeviceResults, Finalizer
from posagent.fleet.outbox import OutboxError, Store
from posagent.fleet.service import export_prometheus
from posagent.selftest.render import report_json
from posagent.selftest.runner import Report

log = logging.getLogger("posagent.daemon.loop")  # the daemon's lines keep the loop's logger name


class Reporter:
    """Commits for the daemon: each report goes to the outbox, then the delivery is woken."""

    def __init__(self, config: Config, outbox: Store, delivery: Delivery, notifier: Notifier,
                 state: AgentState) -> None:
        self.config = config
        self.outbox = outbox
        self.delivery = delivery
        self.notifier = notifier
        self.state = state
        self._exported: dict[str, Any] | None = None  # the last heartbeat written to the textfile

    def heartbeat(self, results: DeviceResults, system: dict[str, Any]) -> bool:
        """Commit a heartbeat and feed the sinks; False if it could not be saved."""
        message = self._commit("heartbeat", messages.heartbeat(self.config, results, system, self.state))
        if message is None:
            return False
        self._history_status(message["devices"])
        if self.config.export.prometheus_textfile:
            self._exported = message
            export_prometheus(self.config.export.prometheus_textfile, message)
        self._status_line(results)
        return True

    def event(self, change: Change, results: DeviceResults) -> None:
        """Commit the event of ``change``; ``results`` are the latest of every device."""
        log.info("device %s: %s -> %s %s (%s)", change.device,
                 change.previous.status.label if change.previous else "?", change.current.status.label,
                 change.current.code, change.current.message)
        self._commit("event", messages.event(self.config, change.device, change.driver, change.current,
                                             change.previous, results, change.suppressed, self.state))

    def delivered(self) -> None:
        """The delivery sent something (or gave up for now): the textfile's outbox and
        delivery figures are written again, so they describe the send, not the moment before."""
        path, last = self.config.export.prometheus_textfile, self._exported
        if not path or last is None:
            return
        try:
            figures = messages.agent_figures(self.outbox.stats(), self.state)
        except Exception as e:  # a figure must never cost the loop
            log.debug("outbox figures: %s", e)
            return
        export_prometheus(path, {**last, "agent": figures})

    def notice(self, device: str, driver: str, result: Result, results: DeviceResults) -> None:
        """Commit what a device's service reported (``Driver.serve``: a print job lost) as an
        event of its own; ``results`` are the latest of every device."""
        log.warning("device %s: %s (%s)", device, result.code, result.message)
        self._commit("event", messages.event(self.config, device, driver, result, None, results, 0, self.state,
                                             kind="device_notice"))

    def selftest(self, report: Report, trigger: str, reason: str) -> None:
        """Commit a finished self-test and record it in the history."""
        log.info("self-test finished: %s in %.0f ms", report.status.label, report.duration_ms)
        self._commit("selftest", messages.selftest(self.config, report_json(report), trigger, reason, self.state))
        self._record_history(report)

    def inventory(self, finalize: Finalizer, trigger: str) -> bool:
        """Commit an inventory (``posagent.daemon.inventory`` decides when); False if not saved."""
        message = self._commit(messages.OUTBOX_KIND["inventory"], finalize)
        if message is not None:
            log.info("inventory (%s) committed as seq %s", trigger, message["seq"])
        return message is not None

    def _commit(self, kind: str, finalize: Finalizer) -> dict[str, Any] | None:
        try:
            message: dict[str, Any] = self.outbox.commit(kind, finalize)
        except OutboxError as e:
            log.error("%s not saved: %s", kind, e)
            self.state.last_error = str(e)
            return None
        self.delivery.notify_new()
        return message

    # -- sinks --------------------------------------------------------------------------
    def _history_status(self, devices: dict[str, Any]) -> None:
        """Let the history count paper-end / on-battery events seen between self-tests."""
        try:
            history.record_status(self.config.agent.state_dir, devices)
        except Exception as e:
            log.warning("history: device flags not recorded: %s", e)

    def _record_history(self, report: Report) -> None:
        try:
            history.record_selftest(self.config, report)
        except Exception as e:
            log.warning("self-test not recorded in the history: %s", e)

    def _status_line(self, results: DeviceResults) -> None:
        """The one line `systemctl status` shows."""
        counts: dict[str, int] = {}
        for _drv, r in results.values():
            counts[r.status.label] = counts.get(r.status.label, 0) + 1
        worst = worst_of(r.status for _d, r in results.values()).label
        text = f"{worst}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        try:
            stats = self.outbox.stats()
        except Exception as e:  # a status line must never cost the loop
            log.debug("outbox stats: %s", e)
        else:
            text += f"; outbox {stats.backlog} waiting"
            if stats.dropped_total:
                text += f", {stats.dropped_total} dropped"
            if stats.rejected:
                text += f", {stats.rejected} rejected"
            if stats.refused:
                text += f", {stats.refused} refused"
            text += f"; last delivery {stats.last_success_at or 'never'}"
        if self.state.last_error:
            text += f"; {self.state.last_error}"
        self.notifier.status(text)
