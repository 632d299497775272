"""Upstream delivery over MQTT (``mqtts://``, ``mqtt://`` on a lab network), with paho-mqtt 2.

- Client id = terminal id, a persistent session (3.1.1: clean session off; 5: clean start
  off and a session expiry of ``mqtt_support.SESSION_EXPIRY``), QoS 1. ``mqtt_version = "auto"`` tries 5
  and falls back to 3.1.1 on a broker that answers "unsupported protocol version" (NATS).
- Every message goes to ``<prefix>/<terminal_id>/<kind>`` (``transport.kind_of``) with the
  stored JSON body as it is; a batch is one publish per body, delivered only when every
  PUBACK came back within ``timeout`` (else FAILED: the outbox keeps and resends them all,
  the collector dedupes on ``message_id``).
- Presence: ``<prefix>/<terminal_id>/online`` retained ``true`` on every (re)connect, and
  a retained last will ``false`` that the broker publishes when the terminal drops (at the
  latest 1.5 x keepalive after its last packet). ``close()`` disconnects cleanly, which
  suppresses the will (a stop or reload is no drop).
- Commands: ``<prefix>/<terminal_id>/cmd`` (QoS 1); each message that is a token
  (``mqtt_support.command_token``) is handed to ``on_command(token, "mqtt")``, in paho's
  network thread; nothing is run here.
- Connections: the first ``post`` starts a link thread that connects (each attempt a new
  paho client; its network loop runs in paho's own thread, ``loop_start``), waits while the
  connection lasts, and on a failure or drop moves on to the next of ``all_urls()`` after a
  full-jitter backoff. A ``post`` while no connection is up answers at once (FAILED with
  the last connection problem, or REFUSED when the broker refused us), or waits at most
  ``timeout`` for a connection attempt in progress; it never waits past ``timeout`` and
  ends at once when ``stop`` is set.

The password is never logged; broker URLs show host and port only.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from posagent.config.model import UpstreamSection
from posagent.fleet import mqtt_support as ms
from posagent.fleet.transport import OnCommand, kind_of
from posagent.fleet.upstream import (
    GZIP_MIN,
    Outcome,
    RetryPolicy,
    SendResult,
    UpstreamError,
    full_jitter,
    gzip_body,
    retrying_send,
)

log = logging.getLogger(__name__)

#: A connection that lasted this long (seconds) resets the reconnect backoff.
STABLE = 10.0
#: How often a wait looks at ``stop`` (an Event nobody notifies this module about).
SLICE = 0.05
_ABANDONED_MAX = 4096


class Link(enum.Enum):
    IDLE = "idle"  # no link thread (before the first post, after close)
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"  # between attempts (backoff)


class MqttTransport:
    """The ``Transport`` for ``mqtt(s)://`` upstreams; see the module doc."""

    def __init__(self, section: UpstreamSection, *, terminal_id: str, on_command: OnCommand | None = None,
                 env: Mapping[str, str] = os.environ, policy: RetryPolicy | None = None,
                 rng: random.Random | None = None, backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        self.section = section
        self.stop = threading.Event()
        self.terminal_id = terminal_id
        self.on_command = on_command
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.backoff = backoff  # (base, cap) of the reconnect backoff, seconds
        self.waits: list[float] = []  # the waits slept in the last send()
        urls = section.all_urls()
        if not urls:
            raise UpstreamError("no upstream URL configured: set [upstream] url in the config")
        self._endpoints = [ms.Endpoint.parse(u, section) for u in urls]
        ms.check_terminal_id(terminal_id)
        self._tls = ms.tls_context(section) if any(ep.tls for ep in self._endpoints) else None
        self._password = ms.read_password(section, env)
        if self._password is not None and not all(ep.tls for ep in self._endpoints):
            log.warning("plain mqtt: the broker password travels unencrypted (allow_insecure_http is for labs)")
        prefix = section.prefix.strip("/")
        if not prefix or any(c in prefix for c in "+#\0"):
            raise UpstreamError(f"upstream.prefix {prefix!a} is no topic prefix: write one without + or #")
        self.online_topic = f"{prefix}/{terminal_id}/online"
        self.cmd_topic = f"{prefix}/{terminal_id}/cmd"
        self._prefix = f"{prefix}/{terminal_id}/"
        self._cond = threading.Condition()
        self._state = Link.IDLE
        self._client: Any = None
        self._connack: Any = None  # (reason code, properties) of the current attempt
        self._last: SendResult | None = None  # the last connection problem
        self._told: str | None = None  # the refusal last logged
        self._acks: dict[int, Any] = {}  # mid -> PUBACK reason code, of the current client
        self._abandoned: set[int] = set()  # mids whose post gave up waiting
        self._v311: set[int] = set()  # endpoints that do not speak MQTT 5 ("auto")
        self._version = 5  # the protocol of the connection in use
        self._at = 0
        self._link: threading.Thread | None = None
        self._closing = threading.Event()
        self.connected_to: str | None = None  # host:port of the broker in use (for tests and status)
        self.connections = 0  # connections made so far

    def topic(self, body: bytes) -> str:
        return self._prefix + kind_of(body)

    # -- the Transport interface --------------------------------------------------------------
    def post(self, bodies: Sequence[bytes], message_ids: Sequence[str]) -> SendResult:
        """One attempt: publish each body (QoS 1); delivered when every PUBACK is in."""
        if self.stop.is_set():
            return SendResult(Outcome.FAILED, "stopped")
        timeout = float(self.section.timeout)
        deadline = time.monotonic() + timeout
        client = self._ready(deadline)
        if client is None:
            if self.stop.is_set():
                return SendResult(Outcome.FAILED, "stopped")
            last = self._last
            if last is None or self._state is Link.CONNECTING:
                return SendResult(Outcome.FAILED, f"no connection to the broker within {timeout:g} s")
            return SendResult(last.outcome, last.detail, retry_after=last.retry_after)
        mids: list[int] = []
        size = 0
        for body in bodies:
            payload, props = self._payload(body)
            size += len(payload)
            try:
                info = client.publish(self.topic(body), payload, qos=1, properties=props)
            except ValueError as e:  # paho's own checks (a payload beyond MQTT's 256 MB)
                return SendResult(Outcome.REJECTED, f"not publishable: {e}", wire_bytes=len(body))
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            mids.append(info.mid)
        acks = self._await(client, mids, deadline)
        if len(acks) < len(bodies):
            if self.stop.is_set():
                detail = "stopped"
            elif self._client is not client or self._state is not Link.UP:
                detail = f"connection to {self.connected_to} lost before every PUBACK"
            else:
                detail = f"no PUBACK for {len(bodies) - len(acks)} of {len(bodies)} message(s) within {timeout:g} s"
            return SendResult(Outcome.FAILED, detail, wire_bytes=size)
        shown = self.connected_to or "?"
        results = [ms.classify(rc.value, rc.getName(), "PUBACK", shown) for rc in acks]
        result = ms.worst(results)
        if result.outcome is Outcome.DELIVERED:
            result = SendResult(Outcome.DELIVERED, f"PUBACK for {len(bodies)} message(s) from {shown}")
        elif result.outcome is Outcome.REJECTED and len(bodies) == 1:
            result.detail = f"{result.detail} (message {message_ids[0]})"
        result.wire_bytes = size
        return result

    def _payload(self, body: bytes) -> tuple[bytes, Any]:
        """What goes on the wire for ``body``: over MQTT 5 with ``gzip = true``, a body of at
        least GZIP_MIN bytes goes gzip-compressed (as HTTP does with Content-Encoding),
        marked by the user property ``content-encoding: gzip`` and content type
        ``application/json``; a gzip payload also starts with the gzip magic (1f 8b), which
        no JSON does, for subscribers on MQTT 3.1.1 that do not see properties. Otherwise
        the stored JSON as it is."""
        if self._version != 5 or not self.section.gzip or len(body) < GZIP_MIN:
            return body, None
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.UserProperty = [("content-encoding", "gzip")]
        return gzip_body(body), props

    def send(self, body: bytes, message_id: str) -> SendResult:
        """One message with retries (a technician's interactive send)."""
        self.waits = []
        return retrying_send(lambda: self.post([body], [message_id]), self.stop, self.policy, self.rng, self.waits)

    def close(self, final: bool = False) -> None:
        """Disconnect cleanly; a later post connects again. A clean disconnect suppresses
        the last will, which is right for a reload (the terminal stays); a ``final`` close
        (the agent stops) first publishes the retained ``online = false`` itself, so a
        stopped terminal does not show online."""
        if final:
            self._announce_offline()
        with self._cond:
            link, closing = self._link, self._closing
            closing.set()
            self._cond.notify_all()
        if link is not None:
            link.join(float(self.section.timeout) + 5.0)
            if link.is_alive():
                log.debug("mqtt: the link thread is still in a connect; left to end on its own")
        with self._cond:
            self._link, self._closing = None, threading.Event()
            self._state, self._client, self.connected_to = Link.IDLE, None, None

    def _announce_offline(self) -> None:
        with self._cond:
            client = self._client if self._state is Link.UP else None
        if client is None:
            return
        try:
            info = client.publish(self.online_topic, b"false", qos=1, retain=True)
            info.wait_for_publish(min(2.0, float(self.section.timeout)))
        except (ValueError, RuntimeError, OSError) as e:
            log.debug("mqtt: online = false not published at stop: %s", e)

    # -- waits for post ---------------------------------------------------------------------------
    def _ready(self, deadline: float) -> Any:
        """The connected client, or None: not connected and no attempt under way, or the
        attempt did not succeed by ``deadline``, or ``stop``."""
        with self._cond:
            if self._state is Link.IDLE:
                self._state, self._last = Link.CONNECTING, None
                self._link = threading.Thread(target=self._run, args=(self._closing,), name="mqtt-link",
                                              daemon=True)
                self._link.start()
            for _ in range(int((deadline - time.monotonic()) / SLICE) + 2):
                if self._state is Link.UP:
                    return self._client
                if self._state is not Link.CONNECTING or self.stop.is_set() or time.monotonic() >= deadline:
                    return None
                self._cond.wait(SLICE)
        return None

    def _await(self, client: Any, mids: list[int], deadline: float) -> list[Any]:
        """The PUBACK reason codes of ``mids``, in order, as far as they came by ``deadline``."""
        with self._cond:
            for _ in range(int((deadline - time.monotonic()) / SLICE) + 2):
                if all(m in self._acks for m in mids) or self._client is not client or self._state is not Link.UP:
                    break
                if self.stop.is_set() or time.monotonic() >= deadline:
                    break
                self._cond.wait(SLICE)
            complete = all(m in self._acks for m in mids)
            got = [self._acks.pop(m) for m in mids if m in self._acks]
            if not complete:  # a PUBACK that comes later is for a post that gave up: dropped
                if len(self._abandoned) > _ABANDONED_MAX:
                    self._abandoned.clear()
                self._abandoned.update(m for m in mids if m not in self._acks)
        return got

    # -- the link thread ----------------------------------------------------------------------------
    def _run(self, closing: threading.Event) -> None:
        """Connect, stay while the connection lasts, fail over with backoff; until close()."""
        failures = 0
        while not closing.is_set():  # as long as the transport lives; every pass waits
            index = self._at
            try:
                since, again = self._session(index, closing)
            except Exception as e:  # never let the link die silently: count it as a failed attempt
                log.error("mqtt: connection to %s: %s: %s", self._endpoints[index].shown, type(e).__name__, e)
                self._failed(SendResult(Outcome.FAILED, f"connection to {self._endpoints[index].shown} failed: "
                                                        f"{type(e).__name__}"))
                since, again = None, False
            if closing.is_set():
                break
            if again:  # the broker does not speak MQTT 5: the same broker again with 3.1.1
                continue
            if since is not None and time.monotonic() - since >= STABLE:
                failures = 0
            failures += 1
            self._at = (index + 1) % len(self._endpoints)
            wait = full_jitter(self.rng, self.backoff[0], self.backoff[1], failures)
            last = self._last
            if last is not None and last.retry_after:
                wait = max(wait, last.retry_after)
            with self._cond:
                if self._state is not Link.IDLE:
                    self._state = Link.DOWN
                self._cond.notify_all()
            log.debug("mqtt: next connection attempt in %.2f s (to %s)", wait, self._endpoints[self._at].shown)
            closing.wait(wait)
            with self._cond:
                if not closing.is_set():
                    self._state = Link.CONNECTING
                    self._cond.notify_all()

    def _session(self, index: int, closing: threading.Event) -> tuple[float | None, bool]:
        """One connection to broker ``index``: (when it came up or None, try again at once)."""
        ep = self._endpoints[index]
        version = 4 if self.section.mqtt_version == "3.1.1" or index in self._v311 else 5
        client = self._new_client(ep, version)
        timeout = float(self.section.timeout)
        with self._cond:
            self._client, self._connack, self._acks = client, None, {}
            self._abandoned.clear()
        try:
            ms.paho_connect(client, ep, version, self._keepalive())
        except (OSError, ValueError) as e:
            self._failed(SendResult(Outcome.FAILED, ms.connect_error(e, ep.shown, timeout)))
            return None, False
        client.loop_start()
        deadline = time.monotonic() + timeout
        with self._cond:
            for _ in range(int(timeout / SLICE) + 2):
                if self._connack is not None or self._client is not client or closing.is_set():
                    break
                if time.monotonic() >= deadline:
                    break
                self._cond.wait(SLICE)
            answer = self._connack
        if answer is None:
            self._drop(client)
            if not closing.is_set():
                self._failed(SendResult(Outcome.FAILED, f"no CONNACK from {ep.shown} within {timeout:g} s"))
            return None, False
        rc, properties = answer
        if rc.is_failure:
            self._drop(client)
            if rc.value == ms.UNSUPPORTED_VERSION and version == 5 and self.section.mqtt_version == "auto":
                log.info("mqtt: %s does not speak MQTT 5; using 3.1.1 with it", ep.shown)
                self._v311.add(index)
                return None, True
            self._failed(ms.classify(rc.value, rc.getName(), "CONNACK", ep.shown, properties))
            return None, False
        since = time.monotonic()
        client.publish(self.online_topic, b"true", qos=1, retain=True)
        client.subscribe(self.cmd_topic, qos=1)
        with self._cond:
            if self._client is client and client.is_connected() and not closing.is_set():
                self._state, self._last, self._told, self.connected_to = Link.UP, None, None, ep.shown
                self.connections += 1
                self._cond.notify_all()
                self._version = version
                log.info("mqtt: connected to %s (MQTT %s)", ep.shown, "5" if version == 5 else "3.1.1")
            # until the connection drops (on_disconnect notifies; is_connected() covers a drop
            # before the state said UP) or close()
            while self._client is client and client.is_connected() and not closing.is_set():
                self._cond.wait(5.0)
            if self._client is client and self._state is Link.UP:
                self._state = Link.DOWN
        self._drop(client)
        return since, False

    def _new_client(self, ep: ms.Endpoint, version: int) -> Any:
        client = ms.paho_client(self.terminal_id, version, timeout=float(self.section.timeout),
                                tls=self._tls if ep.tls else None, username=self.section.username,
                                password=self._password, will_topic=self.online_topic)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_publish, client.on_message = self._on_publish, self._on_message
        client.user_data_set(threading.Event())  # set by on_disconnect
        return client

    def _keepalive(self) -> int:
        return max(1, min(65535, round(self.section.keepalive_s())))

    def _failed(self, result: SendResult) -> None:
        with self._cond:
            self._last = result
            self._cond.notify_all()
        if result.outcome is Outcome.REFUSED and result.detail != self._told:
            log.error("mqtt: %s", result.detail)  # once, until it changes or a connection succeeds
            self._told = result.detail
        else:
            log.debug("mqtt: %s", result.detail)

    def _drop(self, client: Any) -> None:
        """End ``client``'s connection (a clean DISCONNECT if it is still open) and its loop."""
        if client.is_connected():
            client.disconnect()
            client.user_data_get().wait(2.0)  # the DISCONNECT went out: the broker drops the will
        client.loop_stop()

    # -- paho callbacks (its network thread) ------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any) -> None:
        with self._cond:
            if client is self._client:
                self._connack = (rc, properties)
                self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any) -> None:
        userdata.set()
        with self._cond:
            if client is not self._client:
                self._cond.notify_all()
                return
            was_up = self._state is Link.UP
            if was_up:
                self._state = Link.DOWN
                shown = self.connected_to or "?"
                result = ms.classify(rc.value, rc.getName(), "DISCONNECT", shown, properties)
                if result.outcome is Outcome.DELIVERED or rc.value == 0x80:  # "unspecified": the socket closed
                    result = SendResult(Outcome.FAILED, f"connection to {shown} lost")
                self._last = result
            self._cond.notify_all()
        if was_up and not self._closing.is_set():
            log.warning("mqtt: %s", self._last.detail if self._last else "connection lost")

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, properties: Any) -> None:
        with self._cond:
            if client is not self._client:
                return
            if mid in self._abandoned:
                self._abandoned.discard(mid)
            else:
                self._acks[mid] = rc
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        ms.hand_over(msg.topic, bytes(msg.payload), self.cmd_topic, self.on_command)
