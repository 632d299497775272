"""What the MQTT transport (``fleet/mqtt.py``) reads and decides without a connection:
broker URLs, the TLS context, the password, broker answers (reason codes) mapped onto the
delivery outcomes, and command payloads.

Broker answers map like HTTP statuses (MQTT 5 reason codes; paho maps a 3.1.1 CONNACK
return code onto the same names):

- "not authorized", "bad user name or password", "banned", "client identifier not
  valid", "bad authentication method" → ``REFUSED`` (keep everything, tell once), like 401/403;
- "quota exceeded", "server busy", "server unavailable", "use another server", "server
  moved", "server shutting down", "connection rate exceeded" → ``FAILED`` with a retry hint
  (a ``retry-after`` user property when the broker sends one, else ``BUSY_RETRY_AFTER``),
  like 429/503;
- on a PUBACK, "topic name invalid", "payload format invalid", "packet too large" →
  ``REJECTED`` (that message), like another 4xx;
- any other failure code → ``FAILED``; a code below 0x80 is a success.
"""

from __future__ import annotations

import logging
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from posagent.config.model import UpstreamSection
from posagent.config.urls import redact_url, split_userinfo
from posagent.fleet.transport import OnCommand
from posagent.fleet.upstream import MAX_TOKEN, Outcome, SendResult, UpstreamError, parse_retry_after, read_secret

log = logging.getLogger(__name__)

PASSWORD_CREDENTIAL = "upstream-password"
#: MQTT 5 session expiry (seconds): the broker keeps the subscription and queued commands this long.
SESSION_EXPIRY = 86400
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
#: The retry hint (seconds) of a "busy" answer that carried none of its own.
BUSY_RETRY_AFTER = 30.0
UNSUPPORTED_VERSION = 0x84
_REFUSED = {0x85, 0x86, 0x87, 0x8A, 0x8C}
_BUSY = {0x88, 0x89, 0x8B, 0x97, 0x9C, 0x9D, 0x9F}
_REJECTED = {0x90, 0x95, 0x99}


@dataclass(frozen=True)
class Endpoint:
    """One broker: ``mqtts://host[:8883]`` or ``mqtt://host[:1883]``."""

    host: str
    port: int
    tls: bool
    shown: str  # for log lines: host:port, never a password

    @classmethod
    def parse(cls, url: str, section: UpstreamSection) -> Endpoint:
        shown = redact_url(url)
        if split_userinfo(url)[0] is not None:
            raise UpstreamError(f"upstream url {shown} holds a user name or password: remove it from the URL "
                                "and set upstream.username and upstream.password_file")
        try:
            parts = urllib.parse.urlsplit(url)
            scheme, port = parts.scheme.lower(), parts.port
        except ValueError:
            raise UpstreamError(f"upstream url {shown}: the port is not a number between 1 and 65535")
        if scheme not in DEFAULT_PORTS:
            raise UpstreamError(f"upstream url {shown} is not mqtt(s): list brokers of one kind")
        if scheme == "mqtt" and not section.allow_insecure_http:
            raise UpstreamError(f"{shown} is plain mqtt: reports and the password would travel unencrypted; "
                                "use mqtts, or set allow_insecure_http = true on a lab network")
        if not parts.hostname:
            raise UpstreamError(f"upstream url {shown} has no host name")
        port = port or DEFAULT_PORTS[scheme]
        return cls(parts.hostname, port, scheme == "mqtts", f"{parts.hostname}:{port}")


def tls_context(section: UpstreamSection) -> ssl.SSLContext:
    """Verified TLS: ``ca_file`` (a private CA) or the system's CAs; the client certificate
    and key when set. Raises UpstreamError saying which file is wrong."""
    try:
        ctx = ssl.create_default_context(cafile=section.ca_file or None)
    except FileNotFoundError:
        raise UpstreamError(f"ca_file {section.ca_file} not found")
    except (OSError, ssl.SSLError) as e:
        raise UpstreamError(f"ca_file {section.ca_file} is not a PEM certificate bundle: {e}")
    if section.client_cert or section.client_key:
        if not (section.client_cert and section.client_key):
            raise UpstreamError("a client certificate needs its key: set both client_cert and client_key")
        try:
            ctx.load_cert_chain(section.client_cert, section.client_key)
        except FileNotFoundError as e:
            raise UpstreamError(f"client certificate or key {e.filename} not found")
        except (OSError, ssl.SSLError) as e:
            raise UpstreamError(f"client_cert {section.client_cert} / client_key {section.client_key} "
                                f"cannot be used (PEM, the key of that certificate, unencrypted): {e}")
    return ctx


def read_password(section: UpstreamSection, env: Mapping[str, str]) -> str | None:
    """The broker password: the credential ``upstream-password`` or ``password_file``
    (mode 600); None when neither is set. A password needs a user name."""
    password = read_secret(section.password_file, what="password", setting="upstream.password_file",
                           credential=PASSWORD_CREDENTIAL, env=env, spaces=True)
    if password is not None and not section.username:
        raise UpstreamError("an MQTT password needs a user name: set upstream.username")
    return password


def check_terminal_id(terminal_id: str) -> None:
    """A terminal id is one topic level and the client id: no ``/``, ``+``, ``#`` or NUL."""
    if not terminal_id or any(c in terminal_id for c in "/+#\0"):
        raise UpstreamError(f"terminal id {terminal_id!a} cannot be an MQTT topic level: "
                            "set agent.terminal_id without / + #")


def connect_error(e: BaseException, shown: str, timeout: float) -> str:
    """A failed TCP/TLS connect, said for an operator (never a traceback)."""
    if isinstance(e, ssl.SSLCertVerificationError):
        why = e.verify_message or e.reason or "verification failed"
        return (f"TLS certificate not trusted ({why}) at {shown}; set upstream.ca_file for a private CA, "
                "or renew the broker's certificate")
    if isinstance(e, ssl.SSLError):
        return f"TLS handshake with {shown} failed: {e.reason or e}"
    if isinstance(e, TimeoutError):
        return f"no answer from {shown} within {timeout:g} s"
    if isinstance(e, ConnectionRefusedError):
        return f"connection to {shown} refused (no broker listening)"
    if isinstance(e, OSError):
        return f"connection to {shown} failed: {e.strerror or type(e).__name__}"
    return f"connection to {shown} failed: {type(e).__name__}"


def retry_hint(properties: Any) -> float:
    """The seconds a busy broker asked for: a ``retry-after`` user property, else the default."""
    for key, value in getattr(properties, "UserProperty", None) or []:
        if str(key).lower() == "retry-after":
            seconds = parse_retry_after(str(value))
            if seconds is not None:
                return seconds
    return BUSY_RETRY_AFTER


def classify(code: int, name: str, packet: str, shown: str, properties: Any = None) -> SendResult:
    """A broker's reason code on ``packet`` (CONNACK, PUBACK, DISCONNECT) as a result."""
    what = f"{packet} 0x{code:02X} {name} from {shown}"
    if code < 0x80:
        return SendResult(Outcome.DELIVERED, what)
    if code in _REFUSED:
        return SendResult(Outcome.REFUSED, f"{what}: the broker does not let this terminal in or publish there "
                                           "(check upstream.username, the password and the broker's ACL)")
    if code in _BUSY:
        return SendResult(Outcome.FAILED, what, retry_after=retry_hint(properties))
    if code in _REJECTED and packet == "PUBACK":
        return SendResult(Outcome.REJECTED, what)
    return SendResult(Outcome.FAILED, what)


_RANK = {Outcome.REFUSED: 3, Outcome.FAILED: 2, Outcome.REJECTED: 1, Outcome.DELIVERED: 0}


def worst(results: list[SendResult]) -> SendResult:
    """A batch's result: refused over failed over rejected over delivered (a rejected one
    makes the loop send the batch again one by one, so each gets its own answer)."""
    return max(results, key=lambda r: _RANK[r.outcome])


def command_token(payload: bytes) -> str | None:
    """A ``cmd`` message's JWT, or None (logged once) when it is not one: more than
    MAX_TOKEN bytes, not UTF-8, empty, or with spaces or control characters."""
    if len(payload) > MAX_TOKEN:
        log.warning("dropped a command message of %d bytes: more than %d", len(payload), MAX_TOKEN)
        return None
    try:
        token = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        log.warning("dropped a command message of %d bytes: not UTF-8", len(payload))
        return None
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        log.warning("dropped a command message of %d bytes: not a token", len(payload))
        return None
    return token


def paho_client(client_id: str, version: int, *, timeout: float, tls: ssl.SSLContext | None, username: str,
                password: str | None, will_topic: str) -> mqtt.Client:
    """A paho client (callback API 2) for one connection attempt: MQTT 5 (``version`` 5) or
    3.1.1 with a persistent session, TLS when given, the last will ``false`` (retained, QoS 1)
    on ``will_topic``. paho does not reconnect by itself: the transport's link does."""
    if version == 5:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             reconnect_on_failure=False)
    else:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                             protocol=mqtt.MQTTv311, reconnect_on_failure=False)
    client.connect_timeout = timeout
    if tls is not None:
        client.tls_set_context(tls)
    if username:
        client.username_pw_set(username, password)
    client.will_set(will_topic, b"false", qos=1, retain=True)
    return client


def paho_connect(client: mqtt.Client, ep: Endpoint, version: int, keepalive: int) -> None:
    """TCP (and TLS) connect and send CONNECT; MQTT 5 asks for a session kept SESSION_EXPIRY s.
    Raises OSError (ssl errors included) or ValueError."""
    if version == 5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY
        client.connect(ep.host, ep.port, keepalive, clean_start=False, properties=props)
    else:
        client.connect(ep.host, ep.port, keepalive)


def hand_over(topic: str, payload: bytes, cmd_topic: str, on_command: OnCommand | None) -> None:
    """A message that came on our subscription: a command token goes to ``on_command``
    (which decides what it may do); anything else is dropped with one log line."""
    if topic != cmd_topic:
        log.warning("mqtt: ignored a message on a topic other than %s", cmd_topic)
        return
    token = command_token(payload)
    if token is None:
        return
    if on_command is None:
        log.info("mqtt: a command arrived but this agent takes no commands here")
        return
    try:
        on_command(token, "mqtt")
    except Exception as e:  # a command's trouble must not end paho's network loop
        log.error("mqtt: command not taken: %s", type(e).__name__)
