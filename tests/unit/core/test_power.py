"""Power-cycle hygiene (core/power.py): boots, clean stops, time off, from the state dir."""

from __future__ import annotations

import json
from pathlib import Path

from posagent.core import power
from posagent.core.power import Boot, summary

NOW = 1_800_000_000.0
H = 3600.0


def test_a_new_boot_a_restart_and_a_clean_stop(tmp_path: Path) -> None:
    state = str(tmp_path)
    power.record_start(state, "boot-a", NOW - 10 * H, uptime_s=30)
    power.record_alive(state, NOW - 9 * H)
    # the power is cut: no stop recorded; the box comes back 2 minutes later
    power.record_start(state, "boot-b", NOW, uptime_s=0)
    power.record_stop(state, NOW + 5)
    power.record_start(state, "boot-b", NOW + 10, uptime_s=10)  # the agent restarts in the same boot
    boots = power.load(state)
    assert [(b.boot_id, b.clean) for b in boots] == [("boot-a", False), ("boot-b", False)]
    s = summary(boots, NOW + 20)
    assert (s.boots_24h, s.unclean_shutdowns_24h) == (2, 1)
    assert s.last_off_s == 9 * H  # from boot-a's last heartbeat to boot-b's start (an upper bound)
    power.record_stop(state, NOW + 30)
    assert power.load(state)[-1].clean and oct((tmp_path / "power.json").stat().st_mode & 0o777) == "0o600"


def test_counts_only_the_last_24_hours_and_nothing_known_is_none() -> None:
    boots = [Boot(f"b{i}", NOW - (30 - i) * H, NOW - (30 - i) * H + 60, clean=i % 2 == 1) for i in range(8)]
    s = summary(boots, NOW)
    assert s.boots_24h == 2  # b6 and b7 started 24 h and 23 h ago
    assert s.unclean_shutdowns_24h == 1  # b6: not clean, last alive 24 h - 60 s ago (b7 is this boot)
    assert summary([Boot("only", NOW - 60, NOW)], NOW).last_off_s is None


def test_a_damaged_record_is_ignored_entry_by_entry(tmp_path: Path) -> None:
    (tmp_path / "power.json").write_text(json.dumps({"boots": [{"boot_id": "x"}, "junk",
                                                               {"boot_id": "y", "booted_at": 1, "last_alive": 2}]}))
    assert [b.boot_id for b in power.load(str(tmp_path))] == ["y"]
    (tmp_path / "power.json").write_text("{not json")
    assert power.load(str(tmp_path)) == []
