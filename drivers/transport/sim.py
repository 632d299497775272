"""The ``sim:`` transport: start the simulator a ``sim://family?knobs`` URL names and open
what it serves through the seam again (a pty is a ``serial:`` URL, a loopback port a
``tcp:`` one), so a driver runs exactly its hardware code path. Closing the stream stops
the simulator.

An input-device simulator (``sim://keypad``) serves no URL: with ``kind="input"`` the
device it offers is returned, standing in for an ``evdev:`` device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceError
from posagent.drivers import transport
from posagent.drivers.simulator import Simulator, make_sim


def open_sim(url: DeviceURL, *, kind: str = "stream", sim_knobs: Mapping[str, Any] | None = None,
             sim_setup: Callable[[Simulator], None] | None = None, keep: dict[str, Any] | None = None,
             **kw: Any) -> Any:
    """Start ``sim://family`` (``sim_knobs`` under the URL's own knobs, ``sim_setup`` run on
    the simulator before it starts) and open it; ``kw`` goes on to the served URL's opener.

    ``keep`` (a Link that opens and closes for every exchange, ``share = "guest"``) is where
    the running simulator is kept between opens, like a device that stays powered while
    nobody has its port open; the Link stops it when it closes for good."""
    if keep is not None and kind == "stream" and url.raw in keep:
        handle = keep[url.raw]
        try:
            stream = transport.open(handle.url, **kw)
        except DeviceError:
            handle.stop()  # the simulator went away (drop_after_bytes): start a fresh one
            del keep[url.raw]
        else:
            stream.sim, stream.stops_sim = handle, False
            return stream
    sim = make_sim(url.host, {**(sim_knobs or {}), **url.params})
    if sim_setup is not None:
        sim_setup(sim)
    handle = sim.start()
    try:
        if kind == "input":
            device = getattr(handle.sim, "device", None)
            if device is None:
                raise DeviceError(f"sim://{url.host} is not an input device", code="CONFIG_URL_UNSUPPORTED",
                                  facts={"scheme": f"sim://{url.host}"})
            return device(handle)
        stream = transport.open(handle.url, **kw)
    except BaseException:
        handle.stop()
        raise
    stream.sim = handle
    if keep is not None:
        keep[url.raw] = handle
        stream.stops_sim = False
    return stream
