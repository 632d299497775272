"""``posagent heartbeat [--json] [--send]``: the heartbeat the agent would send now.

Without ``--send`` nothing is written: the message is shown with the seq it would get and
the outbox figures (backlog, drops) read from the outbox without writing to it.
With ``--send`` (the technician's "request heartbeat") it is committed to the outbox and
delivered at once; if delivery fails it stays in the outbox for the daemon. Committed
heartbeats are also written to ``[export] prometheus_textfile`` when one is configured.
The status round, the outbox, the upstream and the textfile are the daemon's own services
(``posagent.fleet.service``); ``send()`` is also ``posagent run --once``.

Exit codes: 0 shown / delivered; 65 the upstream rejected it (recorded); 75 not delivered
now (kept in the outbox); 78 upstream settings unusable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

from posagent.cli.common import add_common, load_selected, preview
from posagent.config.model import Config
from posagent.config.urls import redact_url
from posagent.core.statefile import give_to_dir_owner
from posagent.fleet import messages
from posagent.fleet.delivery import deliver
from posagent.fleet.outbox import Outbox, OutboxError
from posagent.fleet.outbox_db import DB_NAME
from posagent.fleet.service import export_prometheus, make_upstream, open_outbox, status_round
from posagent.fleet.transport import Transport
from posagent.fleet.upstream import Outcome, RetryPolicy
from posagent.selftest.devices import DeviceSet
from posagent.selftest.runner import Runner

EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_CONFIG = 78
#: How long ``--send`` (and ``run --once``) may spend delivering.
SEND_DEADLINE = 120.0
#: A person is waiting: fewer, shorter retries than the daemon's.
INTERACTIVE_RETRY = RetryPolicy(attempts=3, base=0.5, cap=4.0, retry_after_cap=30.0, budget=60.0)


def configure(p: argparse.ArgumentParser) -> None:
    add_common(p, lang=False)
    p.add_argument("--send", action="store_true",
                   help="commit it to the outbox and deliver it now (the technician's 'request heartbeat')")


def run(args: argparse.Namespace) -> int:
    config = load_selected(args)
    if args.send:
        return send(config, drain=False, as_json=args.json)
    message = preview(config, build(config))
    if args.json:
        _dump(message, sys.stdout)
    else:
        summary(message, sys.stdout, sent=False)
    return 0


def build(config: Config) -> Any:
    """The heartbeat's finalizer, after one status round."""
    with DeviceSet(config) as devices:
        results, system = status_round(Runner(devices), config)
    return messages.heartbeat(config, results, system)


def match_owner(state_dir: str) -> None:
    """Run as root (``sudo posagent heartbeat --send``) on the service's state dir: leave the
    outbox files to the dir's owner, or the service could not write them any more."""
    give_to_dir_owner((os.path.join(state_dir, DB_NAME + suffix) for suffix in ("", "-wal", "-shm")), state_dir)


def send(config: Config, *, drain: bool, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Commit one heartbeat and deliver it now; with ``drain`` also the backlog."""
    upstream, bad = make_upstream(config, INTERACTIVE_RETRY)
    if bad:
        print(f"posagent: upstream not usable: {bad}", file=sys.stderr)
        return EX_CONFIG
    finalize = build(config)
    try:
        outbox = open_outbox(config)
    except OutboxError as e:
        print(f"posagent: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    try:
        return _commit_and_send(config, outbox, upstream, finalize, drain=drain, as_json=as_json, out=out)
    finally:
        outbox.close()
        match_owner(config.agent.state_dir)


def _commit_and_send(config: Config, outbox: Outbox, upstream: Transport | None, finalize: Any, *, drain: bool,
                     as_json: bool, out: TextIO) -> int:
    match_owner(config.agent.state_dir)
    try:
        message = outbox.commit("heartbeat", finalize)
    except OutboxError as e:
        print(f"posagent: heartbeat not saved: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    if as_json:
        _dump(message, out)
    else:
        summary(message, out, sent=True)
    if config.export.prometheus_textfile:
        export_prometheus(config.export.prometheus_textfile, message)
    if upstream is None:
        print(f"posagent: no upstream url configured: heartbeat seq {message['seq']} kept in the outbox",
              file=sys.stderr)
        return EX_TEMPFAIL
    deadline = time.monotonic() + SEND_DEADLINE
    sent = rejected = 0
    try:
        pending = outbox.get(message["seq"])
        while pending is not None and time.monotonic() < deadline:
            result = deliver(outbox, upstream, pending)
            if result.outcome is Outcome.DELIVERED:
                sent += 1
            elif result.outcome is Outcome.REJECTED:
                rejected += 1  # deliver() logged it (once), and the outbox counted it
            else:
                print(f"posagent: not delivered: {result.detail}; kept in the outbox "
                      f"({outbox.stats().backlog} waiting), the daemon will retry", file=sys.stderr)
                return EX_TEMPFAIL
            # this heartbeat (the newest) went first; the backlog follows oldest first
            pending = outbox.next_pending(after_newest=True) if drain else None
    finally:
        upstream.close()
    left = outbox.stats().backlog
    refused = f"; {rejected} rejected by the upstream (recorded, not retried)" if rejected else ""
    print(f"posagent: delivered {sent} report(s) to {redact_url(config.upstream.all_urls()[0])}{refused}; "
          f"{left} waiting in the outbox", file=sys.stderr)
    if rejected and not drain:
        return EX_DATAERR
    return 0 if not drain or left == 0 else EX_TEMPFAIL


def summary(message: dict[str, Any], out: TextIO, *, sent: bool) -> None:
    state = "committed" if sent else "preview, not sent"
    print(f"heartbeat of {message['terminal_id']} (seq {message['seq']}, {state}): {message['status']}", file=out)
    devices = message["devices"]
    width = max((len(n) for n in devices), default=0)
    code_width = max((len(d["code"]) for d in devices.values()), default=0)
    for name, d in devices.items():
        print(f"  {name:<{width}}  {d['status']:<7}  {d['code']:<{code_width}}  {d['message']}", file=out)
    a = message["agent"]
    refusals = "".join(f", {a[k]} {k}" for k in ("rejected", "refused") if a.get(k))
    print(f"outbox: {a['outbox_backlog']} waiting, {a['dropped']['total']} dropped{refusals}; "
          f"last delivery {a['last_success_at'] or 'never'}", file=out)


def _dump(message: dict[str, Any], out: TextIO) -> None:
    json.dump(message, out, ensure_ascii=False, indent=2)
    out.write("\n")
