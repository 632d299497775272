"""Delivery of reports to the upstream URL: HTTPS POST of JSON, one report or a batch.

- TLS with certificate verification by default (``ca_file`` for a private CA); plain http
  only with ``allow_insecure_http = true``.
- ``Authorization: Bearer <token>`` from systemd's ``$CREDENTIALS_DIRECTORY/upstream-token``
  (LoadCredential=) or from ``token_file``, which must not be readable by group or others.
- ``Idempotency-Key: <message_id>``: the receiver dedupes on it (delivery is at-least-once).
- ``post()`` is one attempt, of one report or of a batch (a JSON array of reports, each
  with its own ``message_id``: the receiver dedupes each). The daemon's delivery loop
  (``fleet/delivery.py``) is the only retry level; ``send()`` retries inside (tenacity) and
  is for a technician's interactive ``posagent heartbeat --send`` only.
- Bodies of at least ``GZIP_MIN`` bytes go with ``Content-Encoding: gzip`` (``gzip = true``);
  a 415 answer to a compressed body turns compression off for this collector and the same
  request goes again uncompressed. The HTTP/1.1 connection is kept for ``keepalive``
  seconds (longer than a heartbeat interval, so a heartbeat does not pay a TLS handshake).
- What the answer says about pacing is handed to the loop: ``Retry-After`` (on 429, any 5xx
  and any 2xx), read only as 1-10 ASCII digits of at most a day (``RETRY_AFTER_MAX``) or an
  HTTP date at most a day ahead, anything else ignored with one log line; and the IETF
  ``RateLimit`` / ``RateLimit-Policy`` fields (``parse_ratelimit``: the pace a collector
  wants a backlog drained at).
- Classification: connection errors, timeouts, 408, 429 and 5xx are transient (``FAILED``).
  Other 4xx are not retried: 401/403/404/405/407 and redirects mean the agent is refused
  or misconfigured (``REFUSED``: keep the report, tell the operator once); any other 4xx is
  about the report(s) sent (``REJECTED``: record it and move on).

The token never appears in a log line or an exception message, and the URL only redacted
(``redact_url``: no userinfo, no query string). A URL with a user or password is refused
(httpx would send Basic auth instead of the bearer token); the config loader refuses it too.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import gzip
import hashlib
import json
import logging
import os
import random
import re
import ssl
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from posagent.config.model import UpstreamSection
from posagent.config.urls import redact_url, split_userinfo
from posagent.core.version import __version__

log = logging.getLogger(__name__)

CREDENTIAL_NAME = "upstream-token"
_REFUSED = {401, 403, 404, 405, 407}
_RETRY = {408, 429}
#: The longest Retry-After honoured (seconds); a longer one is ignored like garbage.
RETRY_AFTER_MAX = 86400.0
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() takes "٣" and "³" too
#: The most of an answer body read for commands (bytes).
MAX_ANSWER = 1 << 20
#: Bodies shorter than this go uncompressed: gzip's own 18 bytes of frame would outweigh the gain.
GZIP_MIN = 256
#: The largest number a RateLimit field may carry here (quota, window, remaining, reset).
_RATELIMIT_MAX = 10**9
#: One member of a structured-field List: a string or token, then ;key=value parameters.
_SF_MEMBER = re.compile(r'\s*(?:"[^"\\]*"|[A-Za-z*][A-Za-z0-9_:.*/%!#$&\'+^`|~-]*)'
                        r'((?:\s*;\s*[a-z*][a-z0-9_.*-]*(?:=(?:"[^"\\]*"|:[A-Za-z0-9+/=]*:|[A-Za-z0-9_.*:/%+-]+))?)*)\s*')
_SF_PARAM = re.compile(r';\s*([a-z*][a-z0-9_.*-]*)(?:=("[^"\\]*"|:[A-Za-z0-9+/=]*:|[A-Za-z0-9_.*:/%+-]+))?')


class UpstreamError(Exception):
    """The upstream settings cannot be used (token file, CA file, URL); the text says the fix."""


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # 2xx
    FAILED = "failed"  # transient: retry later
    REFUSED = "refused"  # the agent as a whole is refused (auth, wrong URL): keep, tell once
    REJECTED = "rejected"  # this report is refused for good: record it, go on


@dataclass(frozen=True)
class ServerPace:
    """What a collector said about pacing with the RateLimit header fields
    (draft-ietf-httpapi-ratelimit-headers): ``rate`` requests per second it wants at most
    (the tightest ``RateLimit-Policy`` quota in requests, ``q / w``, or ``r / t`` of a
    ``RateLimit`` item), and the tightest service limit: ``remaining`` requests before
    ``reset`` seconds have passed. None where the answer did not say."""

    rate: float | None = None
    remaining: int | None = None
    reset: float | None = None


@dataclass
class SendResult:
    outcome: Outcome
    detail: str
    http_status: int | None = None
    retry_after: float | None = None
    attempts: int = 1
    pace: ServerPace | None = None
    gzipped: bool = False  # the (last) request went compressed
    wire_bytes: int = 0  # the body as it went on the wire


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # per send() call; the delivery loop tries again later
    base: float = 1.0  # first backoff ceiling, seconds; doubles each attempt
    cap: float = 60.0  # backoff ceiling
    retry_after_cap: float = 300.0  # the most a Retry-After may make us wait
    budget: float = 300.0  # a send() gives up after this long


def read_token(section: UpstreamSection, env: Mapping[str, str] = os.environ) -> str | None:
    """The bearer token, or None when none is configured. Raises UpstreamError with the fix."""
    return read_secret(section.token_file, what="token", setting="upstream.token_file",
                       credential=CREDENTIAL_NAME, env=env)


def read_secret(path: str, *, what: str, setting: str, credential: str, env: Mapping[str, str] = os.environ,
                spaces: bool = False) -> str | None:
    """A secret of one line (the upstream token, the MQTT password): systemd's
    ``$CREDENTIALS_DIRECTORY/<credential>`` if there is one, else the file ``path`` (the
    config key ``setting``), which must not be readable by group or others; None when
    neither is set. ``spaces``: the secret may hold spaces (a password), else not (a
    token). Raises UpstreamError with the fix; the secret is never in the message."""
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        cred = os.path.join(cred_dir, credential)
        if os.path.exists(cred):  # systemd made it private to this unit
            return _read_secret_file(cred, what, spaces)
    if not path:
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UpstreamError(f"{what} file {path} not found: create it (mode 600) or fix {setting}")
    except OSError as e:
        raise UpstreamError(f"{what} file {path} cannot be read: {e.strerror}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o044:
        who = "everyone" if mode & 0o004 else "its group"
        raise UpstreamError(f"{what} file {path} is readable by {who} (mode {mode:04o}); refusing to use it: "
                            f"chmod 600 {path} and make the agent's user its owner, "
                            f"or pass it with LoadCredential={credential}:PATH")
    return _read_secret_file(path, what, spaces)


def _read_secret_file(path: str, what: str, spaces: bool = False) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.read().strip() if not spaces else fh.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise UpstreamError(f"{what} file {path} cannot be read: {getattr(e, 'strerror', None) or e}")
    if not secret:
        raise UpstreamError(f"{what} file {path} is empty")
    if any((c.isspace() and not (spaces and c == " ")) or not c.isprintable() for c in secret):
        raise UpstreamError(f"{what} file {path} holds more than one line or spaces: write the {what} alone")
    return secret


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: 1-10 ASCII digits of at most RETRY_AFTER_MAX, or an
    HTTP date at most that far ahead (a past one is 0). None if absent; anything else is
    ignored with one log line (the value shown escaped and cut) and gives None too."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(int(text))
        if seconds <= RETRY_AFTER_MAX:
            return seconds
    elif 0 < len(text) <= 64:  # an HTTP date is 29 characters
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            seconds = max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())
            if seconds <= RETRY_AFTER_MAX:
                return seconds
    log.warning("ignoring Retry-After %s: expected seconds (at most %d) or an HTTP date at most a day ahead",
                ascii(text[:40]), RETRY_AFTER_MAX)
    return None


@dataclass
class Upstream:
    """One upstream endpoint (a collector). ``post()`` / ``post_once()`` are one attempt each
    (the daemon's delivery loop); ``send()`` retries (the CLI's interactive send)."""

    section: UpstreamSection
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    stop: threading.Event = field(default_factory=threading.Event)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    waits: list[float] = field(default_factory=list)  # the waits slept in the last send()
    rng: random.Random = field(default_factory=random.Random)  # the backoff's jitter
    # gets each command token a 2xx answer carries ({"commands": [...]}) and "http"
    on_command: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        self._urls = self.section.all_urls()
        if not self._urls:
            raise UpstreamError("no upstream URL configured: set [upstream] url in the config")
        self._at = 0  # the collector in use: a connection failure moves on to the next of `urls`
        schemes = set()
        for url in self._urls:
            shown = redact_url(url)
            if split_userinfo(url)[0] is not None:
                raise UpstreamError(f"upstream url {shown} holds a user name or password: remove it from the URL "
                                    "and put credentials in token_file")
            scheme = url.split(":", 1)[0].lower()
            if scheme == "http" and not self.section.allow_insecure_http:
                raise UpstreamError(f"{shown} is plain http: reports would travel unencrypted; use https, "
                                    "or set allow_insecure_http = true on a lab network")
            if scheme not in ("http", "https"):
                raise UpstreamError(f"upstream url {shown} is not http(s)")
            schemes.add(scheme)
        self._verify = self._tls_context() if "https" in schemes else True
        self._token = read_token(self.section, self.env)
        if self._token is None:
            log.warning("no upstream token configured: sending reports without Authorization")
        elif "http" in schemes:
            log.warning("%s is plain http: the upstream token travels unencrypted with every report "
                        "(allow_insecure_http is for lab networks)", redact_url(self._urls[0]))
        self._client: Any = None
        self._gzip = bool(self.section.gzip)

    @property
    def url(self) -> str:
        """The collector in use (one of ``section.all_urls()``)."""
        return self._urls[self._at]

    def _fail_over(self) -> None:
        """A connection to this collector failed: the next request goes to the next one."""
        if len(self._urls) > 1:
            self._at = (self._at + 1) % len(self._urls)
            log.info("upstream: trying %s next", redact_url(self.url))

    def _tls_context(self) -> Any:
        if not self.section.ca_file:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=self.section.ca_file)
        except FileNotFoundError:
            raise UpstreamError(f"ca_file {self.section.ca_file} not found")
        except (OSError, ssl.SSLError) as e:
            raise UpstreamError(f"ca_file {self.section.ca_file} is not a PEM certificate bundle: {e}")

    def _http(self) -> Any:
        if self._client is None:
            import httpx  # deferred: heavy; only a send needs it, not every importer of this module

            # One kept HTTP/1.1 connection, idle for up to `keepalive` (httpx's default of 5 s
            # made every heartbeat a new TCP and TLS handshake).
            limits = httpx.Limits(max_keepalive_connections=1, keepalive_expiry=self.section.keepalive_s())
            self._client = httpx.Client(timeout=float(self.section.timeout), verify=self._verify,
                                        follow_redirects=False, limits=limits,
                                        headers={"User-Agent": f"posagent/{__version__}"})
        return self._client

    def close(self, final: bool = False) -> None:
        """Let the kept connection go (``final``: the agent stops; nothing more to say over HTTP)."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception as e:
                log.debug("closing the HTTP client: %s", e)
            self._client = None

    @property
    def compressing(self) -> bool:
        """Whether bodies go compressed (``gzip = true`` and no 415 from this collector yet)."""
        return self._gzip

    def post_once(self, body: bytes, message_id: str) -> SendResult:
        """One attempt with one report."""
        return self._post(body, message_id)

    def post(self, bodies: Sequence[bytes], message_ids: Sequence[str]) -> SendResult:
        """One attempt with the reports ``bodies`` (their JSON as stored): one report as it
        is, several as one JSON array (a batch). A 2xx accepts all of them; the receiver
        dedupes each on its ``message_id``."""
        if len(bodies) == 1:
            return self._post(bodies[0], message_ids[0])
        return self._post(batch_body(bodies), batch_key(message_ids))

    def _post(self, body: bytes, key: str) -> SendResult:
        result = self._post_encoded(body, key, compress=self._gzip and len(body) >= GZIP_MIN)
        if result.http_status == 415 and result.gzipped:
            # The collector does not take compressed bodies: say so once, stop compressing
            # for it, and send the same request plain (a negotiation, not a retry).
            log.warning("upstream %s answered 415 to a gzip body: sending uncompressed from now on",
                        redact_url(self.url))
            self._gzip = False
            result = self._post_encoded(body, key, compress=False)
        return result

    def _post_encoded(self, body: bytes, key: str, *, compress: bool) -> SendResult:
        import httpx  # deferred: heavy; only a send needs it, not every importer of this module

        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if compress:
            body = gzip_body(body)
            headers["Content-Encoding"] = "gzip"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            resp = self._http().post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            self._fail_over()
            return SendResult(Outcome.FAILED, f"no answer within {float(self.section.timeout):g} s",
                              gzipped=compress, wire_bytes=len(body))
        except httpx.HTTPError as e:
            url = self.url
            self._fail_over()
            return SendResult(Outcome.FAILED, f"connection failed: {_short(e, url)}",
                              gzipped=compress, wire_bytes=len(body))
        result = classify(resp.status_code, resp.reason_phrase, resp.headers.get("Retry-After"),
                          resp.headers.get("Location"))
        result.pace = parse_ratelimit(resp.headers.get("RateLimit-Policy"), resp.headers.get("RateLimit"))
        result.gzipped, result.wire_bytes = compress, len(body)
        if result.outcome is Outcome.DELIVERED and self.on_command is not None:
            for token in commands_in(resp.content[:MAX_ANSWER]):
                try:
                    self.on_command(token, "http")
                except Exception as e:  # a command's trouble must not undo a delivery
                    log.error("command from the upstream answer not taken: %s", type(e).__name__)
        return result

    def send(self, body: bytes, message_id: str) -> SendResult:
        """Post with retries on transient failures; the last attempt's result."""
        self.waits = []
        return retrying_send(lambda: self.post_once(body, message_id), self.stop, self.policy, self.rng, self.waits)


def retrying_send(attempt: Callable[[], SendResult], stop: threading.Event, policy: RetryPolicy,
                  rng: random.Random, waits: list[float] | None = None) -> SendResult:
    """``attempt()`` again while it fails transiently, with full-jitter backoff (a
    Retry-After, capped, instead where the answer carried one), at most ``policy.attempts``
    times within ``policy.budget`` seconds, until ``stop`` is set; the last result. For a
    technician's interactive send only: the daemon's delivery loop is its own retry level."""
    import tenacity  # deferred: pulls in asyncio; only a send needs it

    p = policy
    attempts = 0

    def wait(rs: tenacity.RetryCallState) -> float:
        last: SendResult = rs.outcome.result()  # type: ignore[union-attr]
        if last.retry_after is not None:
            return min(last.retry_after, p.retry_after_cap)
        return full_jitter(rng, p.base, p.cap, rs.attempt_number)

    def counted() -> SendResult:
        nonlocal attempts
        attempts += 1
        return attempt()

    def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)
        log.debug("attempt %d failed; next in %.2f s", attempts, seconds)
        stop.wait(seconds)  # an Event wait: stop() ends it at once

    retrying = tenacity.Retrying(
        stop=(tenacity.stop_after_attempt(p.attempts) | tenacity.stop_after_delay(p.budget)
              | tenacity.stop_when_event_set(stop)),
        wait=wait,
        retry=tenacity.retry_if_result(lambda r: r.outcome is Outcome.FAILED),
        sleep=sleep,
        retry_error_callback=lambda rs: rs.outcome.result(),  # type: ignore[union-attr]
    )
    result: SendResult = retrying(counted)
    result.attempts = attempts
    return result


#: The most commands taken from one HTTP answer; the rest are dropped with a log line.
MAX_COMMANDS_PER_ANSWER = 16
#: The longest command token accepted (characters); a JWT of a few claims is ~300.
MAX_TOKEN = 8192


def commands_in(body: bytes) -> list[str]:
    """The command tokens of an HTTP 2xx answer body ``{"commands": ["<jwt>", ...]}``; an
    empty list for any other body. A malformed entry is dropped here with a log line (it is
    no token anyone could verify, so there is no command to answer)."""
    if not body or not body.lstrip().startswith(b"{"):
        return []
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    raw = doc.get("commands") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        return []
    tokens = [t.strip() for t in raw if isinstance(t, str) and 0 < len(t.strip()) <= MAX_TOKEN]
    if len(tokens) != len(raw):
        log.warning("upstream answer: %d command entries that are not token strings were ignored",
                    len(raw) - len(tokens))
    if len(tokens) > MAX_COMMANDS_PER_ANSWER:
        log.warning("upstream answer: %d commands; only the first %d are taken",
                    len(tokens), MAX_COMMANDS_PER_ANSWER)
        tokens = tokens[:MAX_COMMANDS_PER_ANSWER]
    return tokens


def full_jitter(rng: random.Random, base: float, cap: float, failures: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(failures-1))].

    The exponent is clamped: a days-long outage counts thousands of failures, and 2.0**1024
    would overflow a float."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(max(1, failures) - 1, 60)))


def gzip_body(body: bytes) -> bytes:
    """A body as it goes with ``Content-Encoding: gzip`` (HTTP) or ``content-encoding: gzip``
    (MQTT 5): level 6, no timestamp, so the same report compresses to the same bytes."""
    return gzip.compress(body, compresslevel=6, mtime=0)


def batch_body(bodies: Sequence[bytes]) -> bytes:
    """The JSON array of stored report bodies (each already a JSON object)."""
    return b"[" + b",".join(bodies) + b"]"


def batch_key(message_ids: Sequence[str]) -> str:
    """The ``Idempotency-Key`` of a batch: a digest of its message ids, so the same batch
    sent again carries the same key (the receiver still dedupes each message on its id)."""
    digest = hashlib.sha256("\n".join(message_ids).encode("ascii", "replace")).hexdigest()
    return f"batch-{len(message_ids)}-{digest[:32]}"


def classify(status: int, reason: str, retry_after: str | None = None, location: str | None = None) -> SendResult:
    what = f"HTTP {status} {reason}".rstrip()
    if 200 <= status < 300:
        # a collector may accept and still ask for a pause: it holds the next request
        return SendResult(Outcome.DELIVERED, what, status, retry_after=parse_retry_after(retry_after))
    if status in _RETRY or status >= 500:
        ra = parse_retry_after(retry_after) if status == 429 or status >= 500 else None
        return SendResult(Outcome.FAILED, what, status, retry_after=ra)
    if status == 401:
        return SendResult(Outcome.REFUSED, f"{what}: the upstream does not accept the token "
                                           "(check upstream.token_file / the upstream-token credential)", status)
    if status == 403:
        return SendResult(Outcome.REFUSED, f"{what}: this terminal is not allowed to report (check its token)", status)
    if 300 <= status < 400:
        where = redact_url(location) if location else "?"
        return SendResult(Outcome.REFUSED, f"{what}: redirected to {where}; put the final URL "
                                           "in upstream.url", status)
    if status in _REFUSED:
        return SendResult(Outcome.REFUSED, f"{what}: check upstream.url", status)
    return SendResult(Outcome.REJECTED, what, status)


def _short(e: BaseException, url: str = "") -> str:
    text = str(e) or type(e).__name__
    cause = e.__cause__ or e.__context__
    if cause is not None and "CERTIFICATE_VERIFY_FAILED" in str(cause):
        text = f"TLS certificate not trusted ({cause}); set upstream.ca_file for a private CA"
    if url:
        text = text.replace(url, redact_url(url))
    return text[:300]


def parse_ratelimit(policy: str | None, limit: str | None) -> ServerPace | None:
    """The pace asked by the ``RateLimit-Policy`` and ``RateLimit`` fields
    (draft-ietf-httpapi-ratelimit-headers: Lists of items such as ``"default";q=100;w=60``
    and ``"default";r=50;t=30``). Only quotas in requests count (``qu`` absent or
    ``"requests"``); of several policies or limits the tightest wins. A malformed field is
    ignored as a whole (the draft says so), as is any number beyond ``_RATELIMIT_MAX``.
    None when neither field says anything usable."""
    rates: list[float] = []
    tightest: tuple[int, float | None] | None = None
    for params in _sf_members(policy):
        q, w = _sf_int(params.get("q")), _sf_int(params.get("w"))
        if params.get("qu", '"requests"') == '"requests"' and q is not None and w:
            rates.append(q / w)
    for params in _sf_members(limit):
        r, t = _sf_int(params.get("r")), _sf_int(params.get("t"))
        if r is None:
            continue
        if t and r > 0:
            rates.append(r / t)
        if tightest is None or r < tightest[0]:
            tightest = (r, float(t) if t is not None else None)
    if not rates and tightest is None:
        return None
    return ServerPace(rate=min(rates) if rates else None,
                      remaining=tightest[0] if tightest else None, reset=tightest[1] if tightest else None)


def _sf_members(value: str | None) -> list[dict[str, str]]:
    """The parameters of each member of a structured-field List; [] when the field is
    absent, too long or malformed anywhere (then it is ignored as a whole)."""
    if not value or len(value) > 1024:
        return []
    members: list[dict[str, str]] = []
    pos = 0
    while pos < len(value):
        m = _SF_MEMBER.match(value, pos)
        if m is None or m.end() == pos:
            return []
        members.append({k: v for k, v in _SF_PARAM.findall(m.group(1))})
        pos = m.end()
        if pos < len(value):
            if value[pos] != ",":
                return []
            pos += 1
    return members


def _sf_int(text: str | None) -> int | None:
    """A non-negative structured-field Integer of at most _RATELIMIT_MAX, else None."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 15:
        return None
    n = int(text)
    return n if n <= _RATELIMIT_MAX else None
