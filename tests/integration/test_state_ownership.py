"""A technician's ``sudo posagent ...`` in the service's state dir leaves every file it
makes to the dir's owner (the service user): a root-owned file of mode 600 there would be
one the service can no longer read or lock (a printer's counters, a UPS battery's tests,
the history). Real commands, real simulated devices on ptys; needs root to chown."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import hours_window, run_cli

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: run the tests as root (CI does) "
                                                           "to chown a state dir to another user")


def test_files_made_by_root_in_the_services_state_dir_are_the_services(
        tmp_path: Path, write_config: Callable[..., Path]) -> None:
    state = tmp_path / "service-state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    cfg = write_config(f'[agent]\nstate_dir = "{state}"\n'
                       '[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "sim://escpos?model=TM-U220"\n'
                       '[device.options]\nimpact = true\n'
                       '[[device]]\nname = "ups"\ndriver = "megatec"\nurl = "sim://megatec?test_seconds=1"\n'
                       f'[device.options]\nbattery_test = true\nbusiness_hours = "{hours_window(inside=False)}"\n')
    for args in (["selftest", "--json"], ["printer", "ribbon-changed", "receipt"], ["ups", "battery-changed", "ups"],
                 ["selftest", "--json", "--only", "ups"]):
        proc = run_cli(*args, "--config", str(cfg))
        assert proc.returncode in (0, 1), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    made = sorted(p for p in state.rglob("*"))
    names = {p.name for p in made}
    assert {"printer-receipt.json", "printer-receipt.json.lock", "battery-ups.json", "history.sqlite3"} <= names, names
    roots = [p.name for p in made if p.stat().st_uid != NOBODY]
    assert roots == [], f"left to root in the service's state dir: {roots}"
