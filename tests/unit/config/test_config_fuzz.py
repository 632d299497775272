"""Config fuzz: random documents over the real key set, and random values for every key of
the example config. ``validate()`` / ``load_config()`` return a Config or raise ConfigError,
never anything else, and every Config they return holds only finite, in-range numbers and
one-line text.

The quick runs are bounded (a few seconds); ``-m slow`` runs the long ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posagent.config import ConfigError, load_config
from posagent.config.loader import _DEVICE_KEYS, _SECTIONS, DEVICE_TIMEOUT, MAX_DEVICES, MAX_NAME, validate
from posagent.config.model import MAX_ITEMS, MAX_TEXT, Config
from posagent.config.urls import MAX_URL
from posagent.core.registry import available_drivers, load_driver
from posagent.core.values import MAX_DURATION, MAX_NUMBER, Duration, HourRange, control_char
from tests.conftest import REPO

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
LONG = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

DRIVERS = sorted(available_drivers())
SECTION_KEYS = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in _SECTIONS.items()}
OPTION_KEYS = sorted({f.name for d in DRIVERS for f in dataclasses.fields(load_driver(d).Options)})
EXAMPLE = tomllib.loads((REPO / "config" / "example.toml").read_text(encoding="utf-8"))

# -- random TOML values of every type -----------------------------------------------------------
NASTY_TEXT = st.sampled_from(["", " ", "0s", "-1s", "nan", "inf", "1e999", "60s", "500ms", "2h", "1d",
                              "03:00", "08:00-22:00", "2027-02-06", "a\nb", "\x1b[31m", "\x00", "\u202e",
                              "/var/lib/posagent", "relative/dir", "x" * 5000, "sim://escpos",
                              "tcp://127.0.0.1:9", "nut://u:p#w@127.0.0.1/ups", "https://u:p@h/x",
                              "serial:///dev/ttyS0?baudrate=9600", "guest", "proxy", "owner", "tcp://127.0.0.1:0"])
SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 2**63, -(2**63), 10**15 + 1, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300]),
    st.text(max_size=30),
    NASTY_TEXT,
    st.dates(),
    st.times(),
    st.datetimes(),
)


# values of the right type, often at or past a range's edge
PLAUSIBLE = st.one_of(
    st.builds(lambda n, unit: f"{n}{unit}", st.one_of(st.integers(0, 10**7), st.sampled_from([0.001, 0.2, 0.5, 1.5])),
              st.sampled_from(["ms", "s", "m", "h", "d", ""])),
    st.integers(-10, 10**6),
    st.floats(-1e6, 1e7),
    st.sampled_from([0, 1, 4096, 4097, 86400, 86401, 100_000, 100_001, 36_500, 0.01, 0.009, 0.2, 0.19]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.sampled_from(["/var/lib/posagent", "03:00", "08:00-22:00", "auto", "zh-CN", "true"]),
    st.lists(st.dates(), max_size=3),
)


EDGE_NUMBERS = st.one_of(st.integers(-10, 10**6), st.floats(-1e6, 1e7), st.sampled_from(
    [0, 0.0, 1, 0.01, 0.009, 0.19, 0.2, 16, 4096, 4097, 3600, 3601, 86400, 86401, 100_000, 100_001, 36_500,
     10**15, 10**15 + 1, 10**400, math.nan, math.inf, -math.inf]))


def typed(tp: Any) -> Any:
    """Values of type ``tp`` as a config writes them: the type checks pass, the ranges decide."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typed(args[0])
    if typing.get_origin(tp) is list:
        return st.lists(typed(args[0]), max_size=3)
    if tp is Duration:
        return st.one_of(st.builds(_duration_text, EDGE_NUMBERS.filter(_written),
                                   st.sampled_from(["ms", "s", "m", "h", "d"])), EDGE_NUMBERS)
    if tp is float:
        return EDGE_NUMBERS
    if tp is int:
        return EDGE_NUMBERS.filter(lambda n: isinstance(n, int))
    if tp is bool:
        return st.booleans()
    if tp is dt.time:
        return st.times().map(lambda t: f"{t:%H:%M}")
    if tp is HourRange:
        return st.tuples(st.times(), st.times()).map(lambda ab: f"{ab[0]:%H:%M}-{ab[1]:%H:%M}")
    if tp is dt.date:
        return st.dates()
    return st.one_of(st.text(max_size=20), st.sampled_from(["", "/var/lib/posagent", "auto", "en", "x" * 200]))


def _written(n: float) -> bool:
    """Whether ``n`` can be written as a duration string ("1.5s"): finite, not negative."""
    return n >= 0 and math.isfinite(n) if isinstance(n, float) else n >= 0


def _duration_text(n: float, unit: str) -> str:
    return f"{n}{unit}" if isinstance(n, int) else f"{n:.3f}{unit}"


def field_values(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: typed(hints[f.name]) for f in dataclasses.fields(cls)}


TYPED_SECTIONS = {name: field_values(cls) for name, cls in _SECTIONS.items()}
TYPED_OPTIONS = {d: field_values(load_driver(d).Options) for d in DRIVERS}


def nested(depth: int) -> Any:
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=depth)


VALUES = st.one_of(PLAUSIBLE, PLAUSIBLE, PLAUSIBLE, SCALARS, nested(8),
                   st.builds(lambda n: _deep(n), st.integers(1, 4000)))
NAMES = st.one_of(st.sampled_from(["receipt", "ups", "box", "收据"]), st.text(max_size=70), NASTY_TEXT, SCALARS)


def _deep(n: int) -> Any:
    value: Any = []
    for _ in range(n):
        value = [value]
    return value


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document over the real keys (sections, device keys, every driver's options): wild
    (any value of any type, unknown keys) or tame (values of plausible types only, so that
    many documents validate and their Config is checked)."""
    tame = draw(st.booleans())
    values = PLAUSIBLE if tame else VALUES
    doc: dict[str, Any] = {}
    for section, keys in SECTION_KEYS.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
            doc[section] = {k: draw(TYPED_SECTIONS[section][k] if tame else values) for k in chosen}
            if not tame and draw(st.booleans()):
                doc[section][draw(st.text(max_size=10))] = draw(SCALARS)
    if tame or draw(st.booleans()):
        doc.setdefault("agent", {})["state_dir"] = "/var/lib/posagent"
    if draw(st.booleans()):
        devices = []
        for i in range(draw(st.integers(0, 4))):
            dev: dict[str, Any] = {"name": f"d{i}" if tame else draw(NAMES),
                                   "driver": draw(st.sampled_from(["system", "battery", "host"])) if tame
                                   else draw(st.one_of(st.sampled_from(DRIVERS), SCALARS))}
            if dev["driver"] == "host" and tame:
                dev["url"] = "tcp://127.0.0.1:9"
            keys = ["timeout", "stale_after"] if tame else list(_DEVICE_KEYS)
            for key in draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)):
                dev[key] = draw(typed(Duration) if tame else values)
            if draw(st.booleans()):
                if tame and dev["driver"] in TYPED_OPTIONS and TYPED_OPTIONS[dev["driver"]]:
                    options = TYPED_OPTIONS[dev["driver"]]
                    keys = draw(st.lists(st.sampled_from(sorted(options)), max_size=2, unique=True))
                    dev["options"] = {k: draw(options[k]) for k in keys}
                else:
                    dev["options"] = {k: draw(values) for k in draw(st.lists(st.sampled_from(OPTION_KEYS),
                                                                             max_size=2))}
            devices.append(dev)
        doc["device"] = draw(VALUES) if not tame and draw(st.integers(0, 9)) == 0 else devices
    if not tame and draw(st.integers(0, 19)) == 0:
        doc[draw(st.text(max_size=10))] = draw(VALUES)
    return doc


def key_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of the example config: ("agent", "terminal_id"), ("device", 0, "options", "impact")..."""
    out: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        if isinstance(v, dict | list) and not (isinstance(v, list) and v and not isinstance(v[0], dict)):
            out.extend(key_paths(v, (*prefix, k)))
    return out


EXAMPLE_PATHS = key_paths(EXAMPLE)


def example_values(path: tuple[Any, ...]) -> Any:
    """Any value, or (as often) one of the type the key at ``path`` of the example takes."""
    fitting = None
    if len(path) == 2 and path[0] in TYPED_SECTIONS:
        fitting = TYPED_SECTIONS[path[0]].get(path[1])
    elif len(path) == 4 and path[0] == "device" and path[2] == "options":
        fitting = TYPED_OPTIONS.get(EXAMPLE["device"][path[1]]["driver"], {}).get(path[3])
    elif len(path) == 3 and path[0] == "device" and path[2] in ("timeout", "stale_after"):
        fitting = typed(Duration)
    return st.one_of(fitting, fitting, VALUES) if fitting is not None else VALUES


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    if isinstance(doc, list):
        return [replaced(v, path[1:], value) if i == path[0] else v for i, v in enumerate(doc)]
    return {**doc, path[0]: replaced(doc[path[0]], path[1:], value)}


# -- the property -------------------------------------------------------------------------------
def check_config(cfg: Config) -> None:
    """Every number finite and in its range; every text one line, bounded."""
    for name in _SECTIONS:
        section = getattr(cfg, name)
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            check_value(getattr(section, f.name), hints[f.name], f, f"{name}.{f.name}")
    assert len(cfg.devices) <= MAX_DEVICES
    assert cfg.agent.state_dir.startswith("/")
    assert 0 < len(cfg.agent.terminal_id) <= 128 and control_char(cfg.agent.terminal_id) is None  # or the hostname
    for d in cfg.devices:
        assert 0 < len(d.name) <= MAX_NAME and control_char(d.name) is None, d.name
        assert d.timeout is None or DEVICE_TIMEOUT.contains(d.timeout), d.timeout
        assert d.url is None or len(d.url.raw) <= MAX_URL
        for key in ("stale_after", "job_idle", "job_timeout"):
            assert 0 < getattr(d.sharing, key) <= 7 * 86400
        if d.options is not None and dataclasses.is_dataclass(d.options):
            hints = typing.get_type_hints(type(d.options))
            for f in dataclasses.fields(d.options):
                check_value(getattr(d.options, f.name), hints[f.name], f, f"{d.name}.options.{f.name}")


def check_value(value: Any, tp: Any, f: dataclasses.Field[Any] | None, where: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        assert math.isfinite(value) and abs(value) <= MAX_NUMBER, (where, value)
        rng = f.metadata.get("range") if f is not None else None
        if rng is not None:
            assert rng.contains(value), (where, value)
        elif Duration in (tp, *typing.get_args(tp)):
            assert 0 <= value <= MAX_DURATION, (where, value)
    elif isinstance(value, str):
        limit = f.metadata.get("max_len", MAX_TEXT) if f is not None else MAX_TEXT
        assert len(value) <= limit and control_char(value) is None, (where, value[:40])
    elif isinstance(value, list):
        assert len(value) <= MAX_ITEMS, where
        for v in value:
            check_value(v, typing.get_args(tp)[0] if typing.get_args(tp) else Any, None, where)


def validate_or_config_error(doc: dict[str, Any]) -> None:
    try:
        cfg = validate(doc, "fuzz.toml")
    except ConfigError as e:
        assert e.problems and all("\n" not in p for p in e.problems)
        return
    check_config(cfg)


# -- a TOML writer, for load_config on real files ------------------------------------------------
def toml_value(v: Any) -> str:
    depth = 0
    while isinstance(v, list) and len(v) == 1 and isinstance(v[0], list):  # _deep(n), without recursion
        depth, v = depth + 1, v[0]
    if depth:
        return "[" * depth + toml_value(v) + "]" * depth
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if abs(v) < 10**4000 else "1"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return '"' + "".join(c if c not in '"\\' and (0x20 <= ord(c) != 0x7F) else f"\\u{ord(c):04x}"
                             for c in v) + '"'
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_value(str(k))} = {toml_value(v)}\n" for k, v in doc.items())


# -- the tests ---------------------------------------------------------------------------------
@QUICK
@given(documents())
def test_random_documents_validate_or_raise_config_error(doc: dict[str, Any]) -> None:
    validate_or_config_error(doc)


@QUICK
@given(st.sampled_from(EXAMPLE_PATHS), st.data())
def test_random_value_for_every_example_key(path: tuple[Any, ...], data: st.DataObject) -> None:
    validate_or_config_error(replaced(EXAMPLE, path, data.draw(example_values(path))))


def test_every_example_key_is_covered() -> None:
    flat = {p[-1] for p in EXAMPLE_PATHS}
    assert {"heartbeat_interval", "check_timeout", "status_poll", "spool_max_mb", "impact", "name", "url"} <= flat


@QUICK
@given(documents())
def test_random_files_load_or_raise_config_error(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    try:
        cfg = load_config(str(path))
    except ConfigError as e:
        assert e.problems and all("\n" not in p for p in e.problems)
        return
    check_config(cfg)


@pytest.mark.slow
@LONG
@given(documents())
def test_random_documents_long_run(doc: dict[str, Any]) -> None:
    validate_or_config_error(doc)


@pytest.mark.slow
@LONG
@given(st.sampled_from(EXAMPLE_PATHS), st.data())
def test_random_example_values_long_run(path: tuple[Any, ...], data: st.DataObject) -> None:
    validate_or_config_error(replaced(EXAMPLE, path, data.draw(example_values(path))))
