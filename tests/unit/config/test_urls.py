"""Device URL parsing per the design's table."""

from __future__ import annotations

import pytest

from posagent.config.urls import parse_url


def test_serial() -> None:
    u = parse_url("serial:///dev/ttyUSB0?baudrate=9600&parity=E&rtscts=true")
    assert (u.scheme, u.path) == ("serial", "/dev/ttyUSB0")
    assert u.params == {"baudrate": 9600, "parity": "E", "rtscts": True}


def test_tcp_usb_evdev_pcsc_https() -> None:
    t = parse_url("tcp://10.0.0.5:9100")
    assert (t.host, t.port) == ("10.0.0.5", 9100)
    u = parse_url("usb://04b8:0e15?in_ep=0x82")
    assert u.params == {"vendor": 0x04B8, "product": 0x0E15, "in_ep": 0x82}
    assert parse_url("evdev:///dev/input/by-id/usb-XYZ-event-kbd").path == "/dev/input/by-id/usb-XYZ-event-kbd"
    assert parse_url("evdev://?name=Keypad").params == {"name": "Keypad"}
    assert parse_url("pcsc://?reader=ACS").params == {"reader": "ACS"}
    assert parse_url("pcsc://").params == {}
    h = parse_url("https://acquirer.example.com/health")
    assert (h.host, h.port, h.path) == ("acquirer.example.com", 443, "/health")
    assert parse_url("http://[::1]:8080/").host == "::1"


def test_nut_with_credentials_is_redacted() -> None:
    u = parse_url("nut://mon:s3cret@127.0.0.1:3493/ups")
    assert (u.host, u.port, u.path, u.username, u.password) == ("127.0.0.1", 3493, "ups", "mon", "s3cret")
    assert "s3cret" not in u.redacted() and "s3cret" not in repr(u) and "s3cret" not in str(u)
    assert parse_url("nut://127.0.0.1/ups").port == 3493


def test_sim() -> None:
    u = parse_url("sim://host?status=503")
    assert (u.scheme, u.host, u.params) == ("sim", "host", {"status": "503"})


@pytest.mark.parametrize("raw,needle", [
    ("", "required"),
    ("/dev/ttyS0", "no scheme"),
    ("serail:///dev/ttyS0", "did you mean 'serial'"),
    ("serial://dev/ttyS0", "three slashes"),
    ("serial:///dev/ttyS0?baud=9600", "did you mean 'baudrate'"),
    ("serial:///dev/ttyS0?baudrate=fast", "not a valid int"),
    ("serial:///dev/ttyS0?baudrate=12345", "standard rate"),
    ("serial:///dev/ttyS0?parity=X", "parity"),
    ("serial:///dev/ttyS0?baudrate=1&baudrate=2", "twice"),
    ("tcp://:9100", "no host"),
    ("tcp://printer", "no port"),
    ("tcp://printer:http", "port"),
    ("usb://4b8:e15", "vendor:product"),
    ("usb://04b8:0e15?in_ep=x", "must be a number"),
    ("evdev://", "path"),
    ("nut://127.0.0.1", "name the UPS"),
    ("pcsc://?readr=ACS", "unknown pcsc option"),
    ("sim://", "name the simulated device"),
    ("sim://toaster", "no simulator"),
    ("sim://host?volume=11", "unknown knob 'volume'"),
    ("sim://host?status=abc", "must be an integer"),
])
def test_bad_urls(raw: str, needle: str) -> None:
    with pytest.raises(ValueError) as ei:
        parse_url(raw)
    assert needle in str(ei.value)
