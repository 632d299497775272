"""Retry-After is read only in its two forms and within a day; upstream URLs are never shown
with their userinfo or query, and a URL with userinfo is never used (no Basic auth)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from posagent.config.model import UpstreamSection
from posagent.fleet.upstream import RETRY_AFTER_MAX, Outcome, Upstream, UpstreamError, classify, parse_retry_after

NOW = dt.datetime(2027, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("value,seconds", [
    ("0", 0.0), ("1", 1.0), (" 120 ", 120.0), ("0000000005", 5.0), ("86400", 86400.0),
    ("Mon, 01 Mar 2027 12:00:30 GMT", 30.0),
    ("Mon, 01 Mar 2027 11:00:00 GMT", 0.0),  # in the past: now
    ("Tue, 02 Mar 2027 12:00:00 GMT", 86400.0),
])
def test_valid_retry_after(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", [
    "86401", "9999999999", "12345678901", "9" * 5000,  # too long a wait, more than 10 digits
    "٣", "³", "１２",  # digits, but not ASCII
    "-5", "+5", "5.0", "1e3", "0x10", "5s", "soon", "",
    "Wed, 03 Mar 2027 12:00:01 GMT",  # more than a day ahead
    "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Mar 99999 12:00:30 GMT", "Mon, 32 Mar 2027 12:00:30 GMT",
    "x" * 100_000, "1\r\nX-Injected: 1", "\x1b[2J5",
])
def test_anything_else_is_ignored_with_one_log_line(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="posagent.fleet.upstream"):
        assert parse_retry_after(value, NOW) is None
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith("ignoring Retry-After ") and len(message) < 250
    assert "\x1b" not in message and "\r" not in message and "\n" not in message


def test_absent_is_none_without_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse_retry_after(None) is None
    assert not caplog.records


def test_classify_takes_only_a_valid_retry_after() -> None:
    assert classify(503, "Service Unavailable", "30").retry_after == 30.0
    assert classify(429, "Too Many Requests", str(10**12)).retry_after is None
    assert RETRY_AFTER_MAX == 86400.0


def test_redirect_location_is_redacted() -> None:
    r = classify(302, "Found", location="https://u:S3CRET@fleet.example.com/new?token=S3CRET")
    assert r.outcome is Outcome.REFUSED and "S3CRET" not in r.detail
    assert "https://***@fleet.example.com/new?***" in r.detail


@pytest.mark.parametrize("url", [
    "https://user:S3CRET@fleet.example.com/hb",
    "https://user:S3#CRET@fleet.example.com/hb",
    "https://user:S3/C?RET@fleet.example.com/hb",
])
def test_upstream_with_userinfo_is_refused_and_redacted(url: str) -> None:
    with pytest.raises(UpstreamError) as ei:
        Upstream(UpstreamSection(url=url), env={})
    assert "S3" not in str(ei.value) and "token_file" in str(ei.value)


@pytest.mark.parametrize("url", ["http://fleet.example.com/hb?token=S3CRET", "ftp://fleet.example.com/hb?k=S3CRET"])
def test_upstream_errors_show_the_url_redacted(url: str) -> None:
    with pytest.raises(UpstreamError) as ei:
        Upstream(UpstreamSection(url=url), env={})
    assert "S3CRET" not in str(ei.value) and "fleet.example.com/hb?***" in str(ei.value)


def test_a_token_over_plain_http_is_said_once_at_start(tmp_path, caplog) -> None:
    import logging

    from posagent.config.model import UpstreamSection
    from posagent.fleet.upstream import Upstream

    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    section = UpstreamSection(url="http://127.0.0.1:9/in", token_file=str(token), allow_insecure_http=True)
    with caplog.at_level(logging.WARNING, logger="posagent.fleet.upstream"):
        Upstream(section, env={})
    said = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(said) == 1 and "token travels unencrypted" in said[0] and "s3cret" not in said[0]
