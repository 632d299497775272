"""The daemon's executor of remote commands (``fleet/commands.py`` decides what they may do).

The upstream hands each command token it receives to ``receive`` from its own thread (the
delivery thread for HTTP, the network thread for MQTT); the token waits in a bounded queue
(``MAX_QUEUED``: a flood beyond it is dropped with a log line, and never recorded, so the
fleet may send it again). The main loop then, one command at a time:

- ``take()`` verifies the waiting tokens (at most ``MAX_PER_TURN`` per turn of the loop);
  a refused one yields its ``refused`` result at once and runs nothing; an accepted one is
  held until no job runs;
- ``job_for()`` gives the job that carries it out, run like any job of the daemon (in the
  job thread, bounded, watched for a wedge): a status round that is also a heartbeat
  (``heartbeat``), a self-test at ``args.level`` (``selftest``), the printers' external
  checks, the test slip (``slip``), or the journal read for the bundle (``diagnostics``);
- ``finished()`` commits the command's one ``posagent.command_result/1`` (``done`` or
  ``failed``), after the heartbeat, self-test or diagnostics message it produced.

Every result goes through the outbox like any report. Nothing here runs a shell, writes a
file the fleet names or changes the config.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posagent.config.model import Config
from posagent.core.base import Level
from posagent.daemon import interrupted
from posagent.daemon.jobs import Job, selftest_bound, status_bound
from posagent.fleet import diagnostics, history, messages
from posagent.fleet.commands import REASONS, Verdict, Verifier
from posagent.fleet.messages import AgentState, DeviceResults, Finalizer
from posagent.fleet.outbox import OutboxError, Store
from posagent.fleet.service import status_round
from posagent.selftest.runner import Report, Runner

log = logging.getLogger("posagent.daemon.commands")
__all__ = ["MAX_PER_TURN", "MAX_QUEUED", "Accepted", "Executor"]

MAX_QUEUED = 64
MAX_PER_TURN = 16
DROP_LOG_INTERVAL = 60.0


@dataclass
class Accepted:
    """A verified command waiting for (or carried out by) its job."""

    verdict: Verdict
    source: str
    received_at: str
    job: Job | None = None


class Executor:
    def __init__(self, config: Config, wake: Callable[[], None], state: AgentState) -> None:
        self._queue: queue.Queue[tuple[str, str, str]] = queue.Queue(MAX_QUEUED)
        self._wake = wake
        self.state = state
        self.config = config
        self.verifier = self._verifier(config, None)
        self.current: Accepted | None = None
        self.dropped = 0
        self._drop_logged = 0.0
        self._lock = threading.Lock()
        self.ring = diagnostics.install_ring()

    # -- any thread ------------------------------------------------------------------
    def receive(self, token: str, source: str) -> None:
        """A token from the upstream (``OnCommand``): queued for the main loop."""
        try:
            self._queue.put_nowait((token, source, messages.now_rfc3339()))
        except queue.Full:
            with self._lock:
                self.dropped += 1
                now = time.monotonic()
                if now - self._drop_logged >= DROP_LOG_INTERVAL:
                    self._drop_logged = now
                    log.warning("remote commands: more than %d waiting; %d dropped so far (not recorded: "
                                "the fleet may send them again)", MAX_QUEUED, self.dropped)
            return
        self._wake()

    # -- the main loop ---------------------------------------------------------------
    def reconfigure(self, config: Config) -> None:
        """A reload: the new keys and allow-list; the replay cache stays with its state dir."""
        self.verifier = self._verifier(config, self.verifier)
        self.config = config

    @staticmethod
    def _verifier(config: Config, previous: Verifier | None) -> Verifier:
        same_dir = previous is not None and previous.config.agent.state_dir == config.agent.state_dir
        verifier = Verifier(config, cache=previous.cache if same_dir and previous is not None else None)
        for problem in verifier.key_problems:
            log.error("remote commands: commands.public_keys %s; commands signed with it are refused", problem)
        return verifier

    def take(self, outbox: Store, notify: Callable[[], None]) -> Accepted | None:
        """Verify waiting tokens; refusals are answered here. The accepted command that is to
        run next (held until its job is started), or None."""
        if self.current is not None:
            return self.current if self.current.job is None else None
        for _ in range(MAX_PER_TURN):
            try:
                token, source, received_at = self._queue.get_nowait()
            except queue.Empty:
                return None
            verdict = self.verifier.check(token)
            if verdict.accepted:
                log.info("command %s (%s) from %s accepted", verdict.jti, verdict.act, source)
                self.current = Accepted(verdict, source, received_at)
                return self.current
            log.warning("command %s (%s) from %s refused: %s (%s)", verdict.jti or "?", (verdict.act or "?")[:64],
                        source, verdict.reason, verdict.detail or REASONS.get(verdict.reason or "", ""))
            self._commit(outbox, notify, self._result(verdict, source, received_at, "refused", verdict.reason,
                                                      verdict.detail, None))
        return None

    def job_for(self, cmd: Accepted, runner: Runner, config: Config) -> tuple[Job, Callable[[], Any]] | None:
        """The job that carries ``cmd`` out; None if it needs none (answered at once, then
        ``finished`` is not called)."""
        act = cmd.verdict.act
        now = time.monotonic()
        if act == "heartbeat":
            job = Job("status", now, status_bound(config), heartbeat=True)
            work: Callable[[], Any] = lambda: status_round(runner, config)  # noqa: E731
        elif act == "selftest":
            level = Level.EXTERNAL if cmd.verdict.args.get("level") == "external" else Level.INTERNAL
            job = Job("selftest", now, status_bound(config), trigger="manual", reason="")
            # a self-test the agent does not live to finish is reported at the next start
            interrupted.begin(config.agent.state_dir, "manual", level.label, dt.datetime.now().astimezone())

            def work() -> Any:
                job.bound = selftest_bound(runner.devices, level)
                return runner.selftest(level)
        elif act == "slip":
            printers = [d.name for d in config.devices if d.driver == "escpos" and d.enabled]
            if not printers:
                return None
            job = Job("command", now, status_bound(config))

            def work() -> Any:
                job.bound = selftest_bound(runner.devices, Level.EXTERNAL)
                return runner.selftest(Level.EXTERNAL, only=printers)
        else:  # diagnostics: the journal is read in the job's thread (journalctl may be slow)
            n = config.commands.log_lines
            job = Job("command", now, diagnostics.JOURNAL_TIMEOUT + 1.0)
            work = lambda: diagnostics.journal_lines(n)  # noqa: E731
        cmd.job = job
        return job, work

    def unable(self, cmd: Accepted, outbox: Store, notify: Callable[[], None], reason: str, detail: str) -> None:
        """``cmd`` cannot be carried out (no printer for a slip): its ``failed`` result."""
        log.warning("command %s (%s) failed: %s", cmd.verdict.jti, cmd.verdict.act, detail)
        self._commit(outbox, notify, self._result(cmd.verdict, cmd.source, cmd.received_at, "failed", reason,
                                                  detail, None))
        self.current = None

    def finished(self, job: Job, outbox: Store, notify: Callable[[], None],
                 latest: DeviceResults | None, committed: bool = True) -> None:
        """``job`` ended (in the main loop, after its own report was committed, ``committed``
        False when that report could not be saved): the command's result."""
        cmd = self.current
        if cmd is None or cmd.job is not job:
            return
        self.current = None
        v = cmd.verdict
        if job.error is not None:
            detail = f"{type(job.error).__name__}: {job.error}"[:300]
            log.warning("command %s (%s) failed: %s", v.jti, v.act, detail)
            self._commit(outbox, notify, self._result(v, cmd.source, cmd.received_at, "failed", "error", detail, None))
            return
        summary: dict[str, Any] = {}
        if v.act == "heartbeat":
            results, _system = job.result
            summary = {"status": messages.worst(results).label}
        elif v.act in ("selftest", "slip"):
            summary = _report_summary(job.result, full=v.act == "slip")
        elif v.act == "diagnostics":
            lines: list[str] | None = job.result
            source = "journal" if lines is not None else "memory"
            if lines is None:
                lines = self.ring.last(self.config.commands.log_lines)
            committed = self._commit(outbox, notify, messages.diagnostics(
                self.config, v.jti, self._bundle(outbox, lines, source, latest), self.state)) is not None
            summary = {"log_source": source, "log_lines": len(lines)}
        if not committed:
            self._commit(outbox, notify, self._result(v, cmd.source, cmd.received_at, "failed", "not_saved",
                                                      "its report could not be saved", summary))
            return
        log.info("command %s (%s) done", v.jti, v.act)
        self._commit(outbox, notify, self._result(v, cmd.source, cmd.received_at, "done", None, "", summary))

    def abandoned(self) -> None:
        """The daemon stops with the command's job still running: it is not answered."""
        if self.current is not None:
            log.warning("stopping: command %s (%s) not finished, no result sent", self.current.verdict.jti,
                        self.current.verdict.act)
        self.current = None

    # -- helpers ---------------------------------------------------------------------
    def _bundle(self, outbox: Store, lines: list[str], source: str, latest: DeviceResults | None) -> dict[str, Any]:
        try:
            stats = outbox.stats()
            figures = messages.agent_figures(stats, self.state)
            figures.update({"seq": stats.seq, "oldest_created": stats.oldest_created})
        except Exception as e:  # figures must not cost the bundle
            figures = {"error": type(e).__name__}
        state_dir = self.config.agent.state_dir
        last, counters = messages.history_figures(state_dir)
        try:
            kept_runs = len(history.runs(state_dir))
        except Exception:
            kept_runs = None
        state = {
            "last_selftest": {k: last.get(k) for k in ("when", "level", "status", "duration_ms") if k in last}
            if last else None,
            "selftest_runs_kept": kept_runs,
            "counters": counters,
            "next_selftest_at": self.state.next_selftest.isoformat(timespec="seconds")
            if self.state.next_selftest else None,
            "commands": {"keys": len(self.verifier.keys), "key_problems": len(self.verifier.key_problems),
                         "allow": list(self.config.commands.allow), "replay_cache": len(self.verifier.cache),
                         "dropped": self.dropped},
        }
        return diagnostics.bundle(self.config, log_lines=lines, log_source=source, state=state, outbox=figures,
                                  results=latest)

    def _result(self, v: Verdict, source: str, received_at: str, outcome: str, reason: str | None, detail: str,
                summary: dict[str, Any] | None) -> Finalizer:
        return messages.command_result(self.config, jti=v.jti, act=(v.act or None) and v.act[:64], outcome=outcome,
                                       reason=reason, detail=detail[:300], result=summary, source=source,
                                       received_at=received_at, state=self.state,
                                       now=dt.datetime.now().astimezone())

    def _commit(self, outbox: Store, notify: Callable[[], None], finalize: Finalizer) -> dict[str, Any] | None:
        """Commit a command_result or diagnostics message (the outbox drops them like events)."""
        try:
            message = outbox.commit(messages.OUTBOX_KIND["command_result"], finalize)
        except OutboxError as e:
            log.error("command result not saved: %s", e)
            self.state.last_error = str(e)
            return None
        notify()
        return message


def _report_summary(report: Report, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"status": report.status.label, "level": report.level.label,
                           "duration_ms": report.duration_ms, "checks": len(report.checks)}
    failing = [c for c in report.checks if c.result.status.label != "ok"]
    shown = report.checks if full else failing
    out["results"] = [{"device": c.device, "check": c.name, "status": c.result.status.label, "code": c.result.code}
                      for c in shown[:32]]
    return out

