"""Result codes of the host driver: grades, message templates, hints (msgids; zh-CN in the .po)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import FAIL, OK, WARN, Code, code
from posagent.core.i18n import N_

CODES: dict[str, Code] = {
    "HOST_DNS_FAILED": code(
        FAIL,
        N_("Cannot resolve the host name {host}"),
        hint=N_("Check the network cable and router, and the DNS server setting."),
    ),
    "HOST_HTTP_ERROR": code(
        FAIL,
        N_("{host} answered HTTP {http_status}"),
        N_("HTTP request to {host} failed ({exception})"),
        N_("HTTP request failed: {detail}"),
        hint=N_("The host answered with an error: report it to the acquirer or fleet operator."),
    ),
    "HOST_OK": code(OK, N_("{host} reachable, {latency_ms} ms")),
    "HOST_PACKET_LOSS": code(
        WARN,
        N_("{host}: {loss_pct} % of connections failed"),
        hint=N_("Connections fail now and then: check the cable, Wi-Fi signal and router."),
    ),
    "HOST_SLOW": code(
        WARN,
        N_("{host} answers slowly ({latency_ms} ms to connect)"),
        hint=N_("The network is slow: check the router and other traffic on the line."),
    ),
    "HOST_TIMEOUT": code(
        FAIL,
        N_("{host} accepted the connection but sent no reply"),
        hint=N_("The host accepted the connection but did not answer: report it to the acquirer."),
    ),
    "HOST_TLS_FAILED": code(
        FAIL,
        N_("TLS handshake with {host} failed"),
        hint=N_(
            "Check the system clock (wrong after a power cut: replace the RTC battery) and the CA certificate; a proxy may be intercepting TLS."
        ),
    ),
    "HOST_UNREACHABLE": code(
        FAIL,
        N_("Cannot connect to {host}"),
        hint=N_("Check the network cable, the router, the firewall and the DNS setting; the host may be down."),
    ),
}
