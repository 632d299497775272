"""Prometheus node_exporter textfile export of a heartbeat (``[export] prometheus_textfile``).

``write_textfile(path, heartbeat)`` renders the heartbeat in the text exposition format
and replaces ``path`` atomically (a temporary file in the same directory, then
``os.replace``), so node_exporter never reads half a file. Rules from the textfile
collector: names ``posagent_*`` with base units (``_seconds``, ``_bytes``, ``_ratio``),
counters end in ``_total``, no client-side timestamps, one HELP/TYPE per family, the
file ends with a newline. Labels: ``terminal_id`` everywhere, ``device`` and ``driver``
on device series. A value the heartbeat does not carry is left out, never written as 0.

Status numbers follow the monitoring-plugins convention: 0 ok, 1 warn, 2 fail, 3 unknown.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from posagent.core.statefile import write_atomic

log = logging.getLogger(__name__)

STATUS_VALUE = {"ok": 0, "warn": 1, "fail": 2, "unknown": 3}
PAPER_STATES = ("ok", "near_end", "end", "unknown")
_STATUS_HELP = " (0 ok, 1 warn, 2 fail, 3 unknown)"

Labels = dict[str, str]


class Exposition:
    """Metric families in the order first seen; each family's samples below its HELP/TYPE."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[tuple[Labels, float]]]] = {}

    def add(self, name: str, kind: str, help_text: str, labels: Labels, value: Any) -> None:
        number = _number(value)
        if number is None:
            return
        family = self.families.setdefault(name, (kind, help_text, []))
        family[2].append((labels, number))

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text, samples) in self.families.items():
            lines.append(f"# HELP {name} {_escape_help(help_text)}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{body}}} {_format(value)}" if body else f"{name} {_format(value)}")
        return "\n".join(lines) + "\n"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _format(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _epoch(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        t = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.astimezone()).timestamp()


def _scaled(value: Any, factor: float) -> float | None:
    """``value`` in base units, rounded to 9 significant digits (0.07 ms is 7e-05 s, not
    7.000000000000001e-05: the float error of the scaling is not a measurement)."""
    number = _number(value) if not isinstance(value, bool) else None
    if number is None:
        return None
    scaled = number * factor
    return float(f"{scaled:.9g}") if math.isfinite(scaled) else scaled


def _whole(value: Any, factor: float) -> float | None:
    """A count in base units (bytes): a whole number, never 84854335078.4 bytes."""
    number = _number(value) if not isinstance(value, bool) else None
    if number is None or not math.isfinite(number):
        return number
    return float(round(number * factor))


def render(heartbeat: dict[str, Any]) -> str:
    """The heartbeat as Prometheus text exposition (what ``write_textfile`` writes)."""
    x = Exposition()
    term: Labels = {"terminal_id": str(heartbeat.get("terminal_id", ""))}
    x.add("posagent_agent_info", "gauge", "the agent that wrote this file",
          {**term, "version": str(heartbeat.get("agent_version", ""))}, 1)
    x.add("posagent_status", "gauge", "worst status of all devices" + _STATUS_HELP, term,
          STATUS_VALUE.get(str(heartbeat.get("status"))))
    x.add("posagent_heartbeat_timestamp_seconds", "gauge", "when the heartbeat was made (Unix time)", term,
          _epoch(heartbeat.get("sent_at")))
    x.add("posagent_heartbeat_interval_seconds", "gauge", "the heartbeat interval", term, heartbeat.get("interval_s"))
    devices = heartbeat.get("devices")
    for name, dev in (devices.items() if isinstance(devices, dict) else []):
        if isinstance(dev, dict):
            _device(x, {**term, "device": str(name), "driver": str(dev.get("driver", ""))}, dev)
    agent = heartbeat.get("agent")
    if isinstance(agent, dict):
        _agent(x, term, agent)
    last = heartbeat.get("last_selftest")
    if isinstance(last, dict):
        x.add("posagent_last_selftest_timestamp_seconds", "gauge", "when the last self-test started (Unix time)",
              term, _epoch(last.get("when")))
        x.add("posagent_last_selftest_status", "gauge", "result of the last self-test" + _STATUS_HELP, term,
              STATUS_VALUE.get(str(last.get("status"))))
    counters = heartbeat.get("counters")
    if isinstance(counters, dict):
        _counters(x, term, counters)
    system = heartbeat.get("system")
    if isinstance(system, dict):
        _system(x, term, system)
    return x.render()


def _device(x: Exposition, lab: Labels, dev: dict[str, Any]) -> None:
    status = str(dev.get("status"))
    x.add("posagent_device_status", "gauge", "device status" + _STATUS_HELP, lab, STATUS_VALUE.get(status))
    if status in STATUS_VALUE:
        x.add("posagent_device_up", "gauge", "1 if the device answered (status not unknown)", lab,
              status != "unknown")
    if isinstance(dev.get("code"), str) and dev["code"]:
        x.add("posagent_device_code_info", "gauge", "the device's current result code", {**lab, "code": dev["code"]},
              1)
    for fieldname, metric in (("paper", "posagent_printer_paper"), ("ribbon", "posagent_printer_ribbon")):
        state = dev.get(fieldname)
        if isinstance(state, str) and state in PAPER_STATES:
            for s in PAPER_STATES:
                x.add(metric, "gauge", f"printer {fieldname} state: 1 for the current state", {**lab, "state": s},
                      s == state)
    cover = dev.get("cover")
    cover_open = cover if isinstance(cover, bool) else \
        {"open": True, "closed": False}.get(cover) if isinstance(cover, str) else None
    x.add("posagent_printer_cover_open", "gauge", "1 if the printer cover is open", lab, cover_open)
    if isinstance(dev.get("online"), bool):
        x.add("posagent_printer_online", "gauge", "1 if the printer reports itself online", lab, dev["online"])
    x.add("posagent_ups_on_battery", "gauge", "1 if running on battery (mains failed)", lab, dev.get("on_battery"))
    x.add("posagent_ups_battery_low", "gauge", "1 if the battery is low", lab, dev.get("battery_low"))
    x.add("posagent_ups_battery_charge_ratio", "gauge", "battery charge, 0-1", lab,
          _scaled(dev.get("battery_charge_pct"), 0.01))
    x.add("posagent_ups_battery_runtime_seconds", "gauge", "estimated runtime on battery", lab,
          _scaled(dev.get("battery_runtime_s"), 1.0))
    x.add("posagent_host_latency_seconds", "gauge", "TCP connect latency to the host", lab,
          _scaled(dev.get("latency_ms"), 0.001))
    _forecasts(x, lab, dev)


def _forecasts(x: Exposition, lab: Labels, dev: dict[str, Any]) -> None:
    """The consumables forecasts; a null (unknown) forecast writes no sample."""
    x.add("posagent_printer_paper_remaining_ratio", "gauge", "share of the paper roll left (forecast), 0-1", lab,
          _scaled(dev.get("paper_remaining_pct"), 0.01))
    x.add("posagent_printer_paper_days_left", "gauge", "days until the paper roll ends at the recent usage", lab,
          _scaled(dev.get("paper_days_left"), 1.0))
    x.add("posagent_printer_ribbon_days_left", "gauge", "days until the ribbon reaches its rated life at the "
          "recent usage", lab, _scaled(dev.get("ribbon_days_left"), 1.0))
    x.add("posagent_ups_battery_health_ratio", "gauge", "UPS battery health from the trend of its battery tests, "
          "0-1", lab, _scaled(dev.get("battery_health_pct"), 0.01))


def _agent(x: Exposition, term: Labels, agent: dict[str, Any]) -> None:
    x.add("posagent_outbox_messages", "gauge", "messages waiting in the outbox", term, agent.get("outbox_backlog"))
    x.add("posagent_outbox_bytes", "gauge", "size of the messages waiting in the outbox", term,
          agent.get("outbox_bytes"))
    dropped = agent.get("dropped")
    if isinstance(dropped, dict):
        for kind, n in sorted(dropped.items()):
            if kind != "total":
                x.add("posagent_outbox_dropped_total", "counter", "messages dropped from a full outbox",
                      {**term, "kind": str(kind)}, n)
    x.add("posagent_outbox_rejected_total", "counter", "messages the upstream rejected for good", term,
          agent.get("rejected"))
    x.add("posagent_upstream_last_success_timestamp_seconds", "gauge", "last delivery accepted upstream (Unix time)",
          term, _epoch(agent.get("last_success_at")))
    x.add("posagent_agent_uptime_seconds", "gauge", "how long the agent has been running", term,
          agent.get("uptime_s"))


def _counters(x: Exposition, term: Labels, c: dict[str, Any]) -> None:
    x.add("posagent_selftests_total", "counter", "self-tests run since install", term, c.get("selftests_run"))
    failures = c.get("failures")
    if isinstance(failures, dict):
        for device, n in sorted(failures.items()):
            x.add("posagent_device_failures_total", "counter", "self-tests in which the device failed since install",
                  {**term, "device": str(device)}, n)
    x.add("posagent_paper_end_events_total", "counter", "paper-end events since install", term,
          c.get("paper_end_events"))
    x.add("posagent_ups_on_battery_events_total", "counter", "UPS on-battery events since install", term,
          c.get("ups_on_battery_events"))


def _system(x: Exposition, term: Labels, s: dict[str, Any]) -> None:
    x.add("posagent_system_disk_free_ratio", "gauge", "free share of the state dir's filesystem, 0-1", term,
          _scaled(s.get("disk_free_pct"), 0.01))
    x.add("posagent_system_disk_free_bytes", "gauge", "free space of the state dir's filesystem", term,
          _whole(s.get("disk_free_mb"), 2.0**20))
    x.add("posagent_system_memory_used_ratio", "gauge", "used share of memory, 0-1", term,
          _scaled(s.get("memory_used_pct"), 0.01))
    x.add("posagent_system_memory_available_bytes", "gauge", "available memory", term,
          _whole(s.get("memory_available_mb"), 2.0**20))
    x.add("posagent_system_load1", "gauge", "1-minute load average", term, s.get("load1"))
    x.add("posagent_system_temperature_celsius", "gauge", "hottest CPU sensor", term, s.get("temperature_c"))
    x.add("posagent_system_uptime_seconds", "gauge", "time since boot", term, s.get("uptime_s"))


_last_error: str | None = None


def write_textfile(path: str, heartbeat: dict[str, Any]) -> None:
    """Write ``heartbeat`` to ``path`` atomically; a failure is logged (once per new error), never raised."""
    global _last_error
    try:
        text = render(heartbeat)
        write_atomic(path, text, mode=0o644, make_dir=False)  # node_exporter reads it as another user
    except OSError as e:
        why = e.strerror or str(e)  # not str(e): it names the random temporary file
        if why != _last_error:
            log.warning("cannot write the Prometheus textfile %s: %s", path, why)
        _last_error = why
        return
    if _last_error is not None:
        log.info("Prometheus textfile %s written again", path)
        _last_error = None
