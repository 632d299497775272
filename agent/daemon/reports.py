"""The daemon's reports: heartbeat, event and self-test messages committed to the outbox,
and what goes along with a heartbeat (the history's device flags, the Prometheus textfile,
the status line ``systemctl status`` shows).

A mixin of ``Daemon`` (``posagent.daemon.loop``); the side outputs never raise.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from posagent.config.model import Config
from posagent.core.base import Status
from posagent.daemon.sdnotify import Notifier
from posagent.fleet.changes import Change, ChangeTracker
from posagent.fleet.delivery import Delivery
from posagent.fleet.messages import AgentState, DeviceResults
from posagent.fleet.outbox import Outbox, OutboxError

if TYPE_CHECKING:
    from posagent.daemon.jobs import Job

log = logging.getLogger("posagent.daemon.loop")


def export_prometheus(path: str, heartbeat: dict[str, Any]) -> None:
    """posagent.fleet.prom.write_textfile if that module is installed; never raises."""
    try:
        prom = importlib.import_module("posagent.fleet.prom")
    except ImportError:
        log.debug("posagent.fleet.prom not available: no textfile export")
        return
    try:
        prom.write_textfile(path, heartbeat)
    except Exception as e:
        log.warning("prometheus textfile %s not written: %s", path, e)


def history_status(state_dir: str, devices: dict[str, Any]) -> None:
    """Let the history count paper-end / on-battery events seen between self-tests."""
    try:
        history = importlib.import_module("posagent.fleet.history")
    except ImportError:
        return
    record = getattr(history, "record_status", None)
    if record is None:
        return
    try:
        record(state_dir, devices)
    except Exception as e:
        log.warning("history: device flags not recorded: %s", e)


def record_history(config: Config, report: Any) -> None:
    try:
        history = importlib.import_module("posagent.fleet.history")
    except ImportError:
        return
    try:
        history.record_selftest(config, report)
    except Exception as e:
        log.warning("self-test not recorded in the history: %s", e)



class ReportsMixin:
    """Commits for ``Daemon``: each report goes to the outbox, then the delivery is woken."""

    config: Config
    notifier: Notifier
    state: AgentState
    outbox: Outbox | None
    delivery: Delivery | None
    changes: ChangeTracker
    heartbeats: int

    def _commit(self, kind: str, finalize: Any) -> dict[str, Any] | None:
        assert self.outbox is not None
        try:
            message: dict[str, Any] = self.outbox.commit(kind, finalize)
        except OutboxError as e:
            log.error("%s not saved: %s", kind, e)
            self.state.last_error = str(e)
            return None
        if self.delivery is not None:
            self.delivery.notify_new()
        return message

    def _commit_heartbeat(self, results: DeviceResults, system: dict[str, Any]) -> None:
        from posagent.fleet import messages

        message = self._commit("heartbeat", messages.heartbeat(self.config, results, system, self.state))
        if message is None:
            return
        self.heartbeats += 1
        history_status(self.config.agent.state_dir, message["devices"])
        if self.config.export.prometheus_textfile:
            export_prometheus(self.config.export.prometheus_textfile, message)
        self._status_line(results)

    def _commit_event(self, change: Change) -> None:
        from posagent.fleet import messages

        log.info("device %s: %s -> %s %s (%s)", change.device,
                 change.previous.status.label if change.previous else "?", change.current.status.label,
                 change.current.code, change.current.message)
        results = self.changes.latest()
        self._commit("event", messages.event(self.config, change.device, change.driver, change.current,
                                             change.previous, results, change.suppressed, self.state))

    def _commit_selftest(self, job: Job) -> None:
        from posagent.fleet import messages
        from posagent.selftest.render import report_json

        report = job.result
        log.info("self-test finished: %s in %.0f ms", report.status.label, report.duration_ms)
        self._commit("selftest", messages.selftest(self.config, report_json(report), job.trigger, job.reason,
                                                   self.state))
        record_history(self.config, report)

    def _status_line(self, results: DeviceResults) -> None:
        """The one line `systemctl status` shows."""
        counts: dict[str, int] = {}
        for _drv, r in results.values():
            counts[r.status.label] = counts.get(r.status.label, 0) + 1
        worst = max((r.status for _d, r in results.values()), default=Status.UNKNOWN).label
        text = f"{worst}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if self.outbox is not None:
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
