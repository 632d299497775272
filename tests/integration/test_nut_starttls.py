"""STARTTLS against a real upsd with a certificate.

Debian's upsd is built with NSS, so its certificate lives in an NSS database
(upsd.conf CERTPATH + CERTIDENT): the fixture makes a self-signed certificate for
127.0.0.1 with openssl and imports it with certutil/pk12util (libnss3-tools).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posagent.core.base import Result, Status
from posagent.drivers.nut import NutDriver
from posagent.selftest.runner import call_with_timeout
from tests.conftest import DriverBuilder, need_binary
from tests.integration.nut_fixture import MAXAGE, NutServer, _started


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(CA/certificate PEM for the client, NSS database directory for upsd)."""
    openssl = need_binary("openssl", "openssl")
    certutil = need_binary("certutil", "libnss3-tools")
    pk12util = need_binary("pk12util", "libnss3-tools")
    d = tmp_path_factory.mktemp("nuttls")
    _run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"))
    _run(openssl, "pkcs12", "-export", "-in", str(d / "cert.pem"), "-inkey", str(d / "key.pem"), "-name", "upsd",
         "-out", str(d / "upsd.p12"), "-passout", "pass:pw")
    (d / "db").mkdir()
    _run(certutil, "-N", "-d", f"sql:{d / 'db'}", "--empty-password")
    _run(pk12util, "-i", str(d / "upsd.p12"), "-d", f"sql:{d / 'db'}", "-W", "pw", "-K", "")
    return d / "cert.pem", d / "db"


class TlsNutServer(NutServer):
    nss_db: Path

    def write_config(self) -> None:
        super().write_config()
        (self.conf / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {self.port}\nMAXAGE {MAXAGE}\n"
                                             f'CERTPATH {self.nss_db}\nCERTIDENT "upsd" ""\n')


@pytest.fixture(scope="module")
def tls_server(tls_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[NutServer]:
    TlsNutServer.nss_db = tls_files[1]
    yield from _started(tmp_path_factory.mktemp("nut-tls") / "srv", TlsNutServer)


@pytest.fixture
def driver(build_driver: DriverBuilder) -> Callable[..., NutDriver]:
    return build_driver.maker(NutDriver, "ups", "nut")


def status(drv: NutDriver) -> Result:
    return call_with_timeout(drv.status, 10.0, "ups.status")


def test_starttls_with_the_servers_ca_reads_the_ups(tls_server: NutServer, tls_files: tuple[Path, Path],
                                                    driver: Callable[..., NutDriver]) -> None:
    r = status(driver(tls_server.url(), starttls=True, tls_ca_file=str(tls_files[0])))
    assert (r.status, r.code) == (Status.OK, "UPS_OK"), r.message
    assert r.fields["ups_status"] == "OL CHRG" and r.fields["battery_charge_pct"] == 87


def test_starttls_with_an_untrusted_certificate_is_refused(tls_server: NutServer,
                                                           driver: Callable[..., NutDriver]) -> None:
    r = status(driver(tls_server.url(), starttls=True))
    assert r.status == Status.UNKNOWN and r.code == "UPSD_TLS_UNAVAILABLE", r.message
    assert "certificate" in r.message.lower()
    # The same server in plain text still answers: TLS is optional on the server side.
    plain = status(driver(tls_server.url()))
    assert plain.code == "UPS_OK"
