"""The value parsers never raise anything but FormError, and the limits say what they refuse."""

from __future__ import annotations

import math

import pytest

from posagent.core.values import (
    FormError,
    Range,
    control_char,
    format_seconds,
    parse_duration,
    shown,
)


@pytest.mark.parametrize("value", [10**400, float("inf"), "1" + "0" * 400 + "s", "9" * 400 + "d"])
def test_huge_durations_are_infinite_not_an_overflow(value: object) -> None:
    assert parse_duration(value) == math.inf


def test_nan_stays_nan_for_the_field_to_refuse() -> None:
    assert math.isnan(parse_duration(float("nan")))


@pytest.mark.parametrize("value", [float("-inf"), -(10**400), -1, "-5s", True, None, [1], {"a": 1}, "5 fortnights"])
def test_bad_durations_raise_form_errors_only(value: object) -> None:
    with pytest.raises(FormError):
        parse_duration(value)


@pytest.mark.parametrize("rng,inside,outside", [
    (Range(1, 86400), [1, 60, 86400, 1.0], [0, 0.999, 86401, math.nan, math.inf, -math.inf, 10**400, -(10**400)]),
    (Range(0, 10, above=True), [1e-9, 10], [0, -1, 10.5, math.nan]),
])
def test_range_contains_only_finite_values_inside(rng: Range, inside: list[float], outside: list[float]) -> None:
    assert all(rng.contains(v) for v in inside)
    assert not any(rng.contains(v) for v in outside)


def test_range_describes_durations_in_config_units() -> None:
    assert Range(0.2, 86400).describe(True) == "must be between 200ms and 1d"
    assert Range(0.01, 3600).describe(True) == "must be between 10ms and 1h"
    assert Range(0, 16, above=True).describe(False) == "must be more than 0 and at most 16"
    assert [format_seconds(s) for s in (0, 0.5, 1, 90, 1800, 7200, 86400 * 366)] == \
        ["0s", "500ms", "1s", "90s", "30m", "2h", "366d"]


@pytest.mark.parametrize("text,char", [
    ("receipt", None), ("收据打印机", None), ("a\nb", "U+000A"), ("\x1b[31mred", "U+001B"), ("a\x00", "U+0000"),
    ("tab\there", "U+0009"), ("bidi\u202eevil", "U+202E"), ("zero\u200bwidth", "U+200B"), ("del\x7f", "U+007F"),
])
def test_control_char_finds_cc_and_cf(text: str, char: str | None) -> None:
    assert control_char(text) == char


def test_shown_escapes_and_cuts() -> None:
    assert shown("a\x1b[0m") == repr("a\x1b[0m")
    assert len(shown("x" * 100_000)) <= 61
    assert "digits" in shown(10**400) and len(shown(10**400)) < 80
    assert shown(5) == "5"
