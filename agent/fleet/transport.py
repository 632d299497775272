"""The seam between the delivery loop and the wire: one ``Transport`` per upstream.

A transport sends one message or a batch and says how it went (``SendResult``: delivered,
failed = retry later with an optional hint, rejected, refused); the outbox, seq numbers,
message ids and schemas are the same whatever carries them. Which transport is chosen by
the scheme of ``[upstream] url`` (or the first of ``urls``):

- ``https://`` (``http://`` on a lab network): ``fleet/upstream.py``, one POST per request;
  a 2xx is delivered.
- ``mqtts://`` (``mqtt://`` on a lab network): ``fleet/mqtt.py``, QoS 1 publishes to
  ``<prefix>/<terminal_id>/<kind>``; a PUBACK is delivered.

Remote commands come back the same way on both: each transport hands every command token
it receives (in an HTTP 2xx body as ``{"commands": [...]}``, on the MQTT ``cmd`` topic) to
the ``on_command`` callback it was given; ``fleet/commands.py`` decides what they may do.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from posagent.config.model import UpstreamSection
from posagent.fleet.upstream import MAX_TOKEN, RetryPolicy, SendResult, Upstream, UpstreamError, commands_in

log = logging.getLogger(__name__)
__all__ = ["MAX_TOKEN", "OnCommand", "Transport", "commands_in", "kind_of", "open_transport", "same_upstream"]

#: A command token received from upstream, and where from ("http", "mqtt").
OnCommand = Callable[[str, str], None]

MQTT_SCHEMES = ("mqtt", "mqtts")
HTTP_SCHEMES = ("http", "https")


class Transport(Protocol):
    """What the delivery loop needs of an upstream."""

    section: UpstreamSection
    stop: threading.Event  # set: end a request in flight at once (stop, reload)

    def post(self, bodies: Sequence[bytes], message_ids: Sequence[str]) -> SendResult:
        """One attempt to deliver ``bodies`` (one message, or a batch); never raises."""
        ...

    def send(self, body: bytes, message_id: str) -> SendResult:
        """One message with retries (``retrying_send``): a technician's interactive send."""
        ...

    def close(self, final: bool = False) -> None:
        """Let go of connections; a later ``post`` may open them again. ``final``: the agent
        stops (MQTT says ``online = false`` first; a reload is not final)."""
        ...


def kind_of(body: bytes) -> str:
    """A message's kind from its ``schema`` field: ``posagent.heartbeat/1`` is ``heartbeat``
    (the MQTT topic's last level). A body without one is ``unknown``."""
    try:
        schema = json.loads(body).get("schema", "")
    except (ValueError, AttributeError):
        return "unknown"
    if not isinstance(schema, str) or not schema.startswith("posagent."):
        return "unknown"
    kind = schema[len("posagent."):].split("/", 1)[0]
    return kind if kind.replace("_", "").isalnum() and kind.isascii() else "unknown"


def open_transport(section: UpstreamSection, *, terminal_id: str, policy: RetryPolicy | None = None,
                   on_command: OnCommand | None = None, env: Mapping[str, str] | None = None) -> Transport:
    """The transport for ``section``'s URL scheme. Raises UpstreamError with the fix."""
    scheme = section.url_scheme()
    if not scheme:
        raise UpstreamError("no upstream URL configured: set [upstream] url in the config")
    if scheme in MQTT_SCHEMES:
        from posagent.fleet.mqtt import MqttTransport  # paho only where MQTT is used

        return MqttTransport(section, terminal_id=terminal_id, on_command=on_command,
                             env=os.environ if env is None else env)
    if scheme in HTTP_SCHEMES:
        return Upstream(section, policy=policy or RetryPolicy(), on_command=on_command,
                        env=os.environ if env is None else env)
    raise UpstreamError(f"upstream url scheme {scheme!r} is not supported: write https://... or mqtts://...")


def same_upstream(a: Transport | None, b: Transport | None) -> bool:
    """Whether two transports talk to the same collector(s) (a reload that kept them keeps
    what the collector asked for: a Retry-After hold, a pace)."""
    return a is not None and b is not None and a.section.all_urls() == b.section.all_urls()
