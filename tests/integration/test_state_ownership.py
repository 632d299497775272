"""A technician's ``sudo posagent ...`` in the service's state dir leaves every file it
makes to the dir's owner (the service user): a root-owned file of mode 600 there would be
one the service can no longer read or lock (a printer's counters, a UPS battery's tests,
the history). Real commands, real simulated devices on ptys; needs root to chown."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from posagent.fleet import outbox_db
from posagent.fleet.outbox import OutboxError
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


def _as_nobody(argv: list[str]) -> tuple[int, str]:
    """``posagent ARGV`` run in a forked child that became ``nobody`` (no exec: the
    interpreter is already loaded); its exit code and what it said on stderr."""
    import importlib

    from posagent.cli import COMMANDS, main

    importlib.import_module(COMMANDS[argv[0]][0])  # loaded before: nobody may not read the interpreter's files
    return _call_as_nobody(lambda: main(argv))


def _call_as_nobody(call: Callable[[], int]) -> tuple[int, str]:
    import tempfile

    with tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.dup2(err.fileno(), 2)
                sys.stderr = open(2, "w", closefd=False)  # (pytest had put its capture in its place)  # noqa: SIM115
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                code = call()
            finally:
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), err.read().decode()


def test_a_user_who_may_not_read_the_state_dir_is_told_so_not_shown_empty_counters(tmp_path: Path) -> None:
    import tempfile

    public = Path(tempfile.mkdtemp(prefix="posagent-public-"))
    try:
        public.chmod(0o755)
        state = public / "state"
        state.mkdir(mode=0o700)  # the service's (here root's), as the package makes it
        (state / "printer-receipt.json").write_text('{"schema": 1, "lines_total": 5}\n')
        (state / "battery-ups.json").write_text('{"schema": 1, "tests": []}\n')
        cfg = public / "posagent.toml"
        cfg.write_text(f'[agent]\nstate_dir = "{state}"\n'
                       '[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "sim://escpos"\n'
                       '[[device]]\nname = "ups"\ndriver = "megatec"\nurl = "sim://megatec"\n')
        cfg.chmod(0o644)
        (state / "history.sqlite3").write_bytes(b"")
        for argv in (["printer", "counters", "receipt"], ["ups", "battery", "ups"], ["ups", "battery-changed", "ups"],
                     ["history"]):
            code, err = _as_nobody([*argv, "--config", str(cfg)])
            assert code == 77, (argv, code, err)
            assert "Permission denied" in err and "run it with sudo" in err and "Traceback" not in err, err
        (state / "outbox.db").write_bytes(b"")  # heartbeat --json's figures: not "an empty outbox"

        def peek() -> int:
            try:
                outbox_db.peek(str(state))
            except OutboxError as e:
                print(e, file=sys.stderr)
                return 1
            return 0

        code, err = _call_as_nobody(peek)
        assert code == 1 and "cannot read the outbox" in err and "run it with sudo" in err, (code, err)
    finally:
        import shutil

        shutil.rmtree(public)
