"""The runner: concurrency, per-check timeouts, exceptions and garbage become results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from posagent.cli.common import exit_code
from posagent.config.loader import validate
from posagent.core.base import Check, CheckContext, Driver, Level, Result, Status
from posagent.core.errors import DeviceTimeout
from posagent.selftest.devices import DeviceSet
from posagent.selftest.runner import Runner, call_with_timeout

RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def _release_hung_threads() -> Iterator[None]:
    RELEASE.clear()
    yield
    RELEASE.set()  # let abandoned check threads end


@dataclass(frozen=True)
class FakeOptions:
    behaviour: str = "ok"


def _behave(kind: str) -> Callable[[CheckContext], object]:
    def run(ctx: CheckContext) -> object:
        if kind == "ok":
            return Result.ok("FAKE_OK", "fine", measurements={"x_ms": 1.0})
        if kind == "warn":
            return Result.warn("FAKE_WARN", "meh")
        if kind == "fail":
            return Result.fail("FAKE_FAIL", "broken")
        if kind == "hang":
            RELEASE.wait(30)
            return Result.ok("FAKE_OK", "too late")
        if kind == "raise":
            raise ValueError("boom")
        if kind == "timeout":
            raise DeviceTimeout("no answer", code="FAKE_NO_RESPONSE")
        if kind == "garbage":
            return {"status": "ok"}
        if kind == "badstatus":
            return Result("ok", "X", "status is a string")  # type: ignore[arg-type]
        raise AssertionError(kind)

    return run


class FakeDriver(Driver):
    name = "fake"
    family = "test"
    schemes = ()
    url_required = False
    Options = FakeOptions

    def status(self) -> Result:
        return _behave(self.options.behaviour)(CheckContext(deadline=time.monotonic() + 1))  # type: ignore[return-value]

    def checks(self) -> list[Check]:
        kinds = self.options.behaviour.split("+")
        return [Check(f"c{i}", Level.INTERNAL, _behave(k)) for i, k in enumerate(kinds)] + [
            Check("slip", Level.EXTERNAL, _behave("ok"))]


@pytest.fixture
def devices(tmp_path: Path, mocker) -> Callable[..., DeviceSet]:
    mocker.patch("posagent.core.registry.load_driver", return_value=FakeDriver)
    mocker.patch("posagent.config.loader.load_driver", return_value=FakeDriver)
    mocker.patch("posagent.selftest.devices.load_driver", return_value=FakeDriver)

    def make(*behaviours: str, timeout: str = "0.3s") -> DeviceSet:
        raw = {"agent": {"state_dir": str(tmp_path), "check_timeout": timeout},
               "device": [{"name": f"d{i}", "driver": "fake", "options": {"behaviour": b}}
                          for i, b in enumerate(behaviours)]}
        mocker.patch("posagent.config.loader.available_drivers", return_value=["fake"])
        from posagent.core import registry

        mocker.patch.object(registry, "available_drivers", return_value=["fake"])
        return DeviceSet(validate(raw, "t.toml"))

    return make


def run(ds: DeviceSet, level: Level = Level.EXTERNAL) -> dict[str, Result]:
    report = Runner(ds).selftest(level)
    return {c.key: c.result for c in report.checks}


def test_hung_check_is_cut_at_its_timeout(devices) -> None:
    ds = devices("hang+ok", "ok")
    t0 = time.monotonic()
    res = run(ds)
    elapsed = time.monotonic() - t0
    assert res["d0.c0"].status == Status.UNKNOWN and res["d0.c0"].code == "CHECK_TIMEOUT"
    assert res["d0.c1"].code == "CHECK_SKIPPED"  # the port is still held by the hung check
    assert res["d0.slip"].code == "CHECK_SKIPPED"
    assert res["d1.c0"].status == Status.OK
    assert elapsed < 10  # bounded: the run does not wait for the hung thread


def test_exceptions_and_garbage_become_unknown(devices) -> None:
    res = run(devices("raise", "garbage", "badstatus", "timeout"))
    assert (res["d0.c0"].status, res["d0.c0"].code) == (Status.UNKNOWN, "DRIVER_ERROR")
    assert "ValueError: boom" in res["d0.c0"].message
    assert (res["d1.c0"].status, res["d1.c0"].code) == (Status.UNKNOWN, "DRIVER_BAD_RESULT")
    assert res["d2.c0"].code == "DRIVER_BAD_RESULT"
    assert (res["d3.c0"].status, res["d3.c0"].code) == (Status.UNKNOWN, "FAKE_NO_RESPONSE")


def test_levels_are_cumulative(devices) -> None:
    assert set(run(devices("ok"), Level.INTERNAL)) == {"d0.c0"}
    assert set(run(devices("ok"), Level.EXTERNAL)) == {"d0.c0", "d0.slip"}


def test_devices_run_concurrently(devices, mocker) -> None:
    barrier = threading.Barrier(2, timeout=5)

    def meet(ctx: CheckContext) -> Result:
        barrier.wait()  # only passes if both devices' checks run at the same time
        return Result.ok("MET", "met")

    mocker.patch.object(FakeDriver, "checks", lambda self: [Check("meet", Level.INTERNAL, meet)])
    res = run(devices("ok", "ok", timeout="10s"))
    assert res["d0.meet"].code == res["d1.meet"].code == "MET"


def test_status_cut_and_results(devices) -> None:
    out = Runner(devices("ok", "hang", "fail")).status()
    assert out["d0"][1].status == Status.OK
    assert out["d1"][1].code == "CHECK_TIMEOUT"
    assert out["d2"][1].status == Status.FAIL and out["d2"][0] == "fake"


def test_only_and_durations(devices) -> None:
    report = Runner(devices("ok", "ok")).selftest(Level.INTERNAL, only=["d1"])
    assert [c.key for c in report.checks] == ["d1.c0"]
    assert report.checks[0].result.duration_ms >= 0 and report.duration_ms > 0


@pytest.mark.parametrize("statuses,code", [
    ([Status.OK, Status.OK], 0), ([Status.OK, Status.WARN], 1), ([Status.WARN, Status.FAIL], 2),
    ([Status.FAIL, Status.UNKNOWN], 2), ([Status.WARN, Status.UNKNOWN], 3), ([Status.UNKNOWN, Status.OK], 3),
    ([], 3)])
def test_exit_codes(statuses: list[Status], code: int) -> None:
    """fail > unknown > warn > ok: a failure is never hidden behind a silent device."""
    assert exit_code(statuses) == code


def test_worst_ranks_fail_above_unknown() -> None:
    from posagent.core.status import worst

    assert worst([Status.UNKNOWN, Status.FAIL, Status.WARN]) == Status.FAIL
    assert worst([Status.OK, Status.UNKNOWN, Status.WARN]) == Status.UNKNOWN
    assert worst([]) == Status.UNKNOWN and worst([], default=Status.OK) == Status.OK
    assert [s.severity for s in (Status.OK, Status.WARN, Status.UNKNOWN, Status.FAIL)] == [0, 1, 2, 3]


def test_call_with_timeout_measures() -> None:
    r = call_with_timeout(lambda: Result.ok("A", "b"), 1.0, "x")
    assert r.code == "A" and r.duration_ms >= 0


def test_system_driver_on_a_filesystem_without_size(tmp_path: Path, mocker) -> None:
    """A pseudo filesystem (total 0, e.g. /proc) has no free share: reported, not a crash."""
    import collections

    from tests.conftest import device_entry, device_set

    usage = collections.namedtuple("usage", "total used free percent")
    mocker.patch("psutil.disk_usage", return_value=usage(0, 0, 0, 0.0))
    with device_set(tmp_path, device_entry("box", "system")) as ds:
        r = Runner(ds).status()["box"][1]
    assert r.code in ("SYSTEM_OK", "MEMORY_LOW", "LOAD_HIGH", "TEMP_HIGH"), r.message
    assert "disk size not reported" in r.message or r.code != "SYSTEM_OK"
    assert r.fields["disk_free_pct"] is None
