"""The JSON of ``selftest --sim``, ``status --sim`` and ``heartbeat --sim`` keeps its keys
and values across refactors: compared with golden files made before the restructure.

Values that change from run to run (times, durations, ids, latencies, counters that grow
with each run of the simulated printer) are replaced by their type before comparing, so
the comparison covers every key, every code, status, message and fixed measurement.
Regenerate with ``POSAGENT_GOLDEN_WRITE=1 pytest tests/integration/test_golden_outputs.py``
only when a change of output is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
#: keys whose values vary per run (times, ids, machine figures); their type is kept
VOLATILE_KEYS = {"started_at", "sent_at", "message_id", "boot_id", "uptime_s", "clock", "disk_path", "host",
                 "next_selftest_at",
                 "last_success_at", "memory_used_pct", "disk_free_pct", "load1"}
VOLATILE_SUFFIXES = ("_ms", "_mb")
#: in text: decimals (latencies, percentages of this machine) and loopback ports
VOLATILE_TEXT = ((re.compile(r"(127\.0\.0\.1|localhost):\d+"), "LOOPBACK:PORT"),
                 (re.compile(r"memory \d+ % used"), "memory #.# % used"),  # this machine's, when whole
                 (re.compile(r"disk \d+ % free"), "disk #.# % free"),
                 (re.compile(r"(?<![\d.])\d+ ms\b"), "#.# ms"),  # a latency that came out whole
                 (re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])"), "#.#"))
COMMANDS = {
    "selftest": ["selftest", "--sim", "--json"],
    "status": ["status", "--sim", "--json"],
    "heartbeat": ["heartbeat", "--sim", "--json"],
}


def normalize(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: normalize(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, key) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if key in VOLATILE_KEYS or key.endswith(VOLATILE_SUFFIXES):
        return f"<{type(value).__name__}>"
    if isinstance(value, str):
        for pattern, repl in VOLATILE_TEXT:
            value = pattern.sub(repl, value)
    return value


def run_json(args: list[str], tmp: Path) -> Any:
    env = dict(os.environ, TMPDIR=str(tmp), POSAGENT_LANG="en", LANG="C.UTF-8")
    env.pop("POSAGENT_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "posagent", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_output_matches_golden(name: str, tmp_path: Path) -> None:
    got = normalize(run_json(COMMANDS[name], tmp_path))
    path = GOLDEN / f"{name}.json"
    if os.environ.get("POSAGENT_GOLDEN_WRITE") == "1":
        path.write_text(json.dumps(got, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert got == json.loads(path.read_text(encoding="utf-8"))
