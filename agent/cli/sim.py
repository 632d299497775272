"""``posagent sim``: start simulated devices, print their URLs, run until Ctrl-C."""

from __future__ import annotations

import argparse
import signal

from posagent.cli.common import UsageError
from posagent.config.urls import parse_url
from posagent.core.i18n import _
from posagent.core.waker import Waker
from posagent.drivers.simulator import simulator_families, start_sim


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("urls", nargs="*", metavar="SIM_URL",
                   help="simulators to start, e.g. sim://escpos?paper=near_end "
                        "(default: one of each family)")


def run(args: argparse.Namespace) -> int:
    urls = args.urls or [f"sim://{family}" for family in simulator_families()]
    handles = []
    try:
        for raw in urls:
            try:
                url = parse_url(raw)
            except ValueError as e:
                raise UsageError(str(e)) from None
            if url.scheme != "sim":
                raise UsageError(_("'{url}' is not a sim:// URL").format(url=raw))
            handle = start_sim(url.host, url.params)
            handles.append(handle)
            print(f"{raw}\t{handle.url}", flush=True)
        stop = Waker()  # set in a signal handler: not a threading.Event (posagent.core.waker)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    finally:
        for h in handles:
            h.stop()
    return 0
