"""Built-in simulated devices, chosen by ``sim://FAMILY?knob=value`` URLs.

The table below maps a family to its simulator class (imported on first use). Every
simulator speaks its device's real protocol over a real pty, socket or event pipe.
"""

from __future__ import annotations

import importlib
from typing import Any

from posagent.drivers.sim.base import SimHandle, Simulator

#: family -> "module:Class"
SIMULATORS: dict[str, str] = {
    "escpos": "posagent.drivers.sim.escpos:EscposSim",
    "megatec": "posagent.drivers.sim.megatec:MegatecSim",
    "card-reader": "posagent.drivers.sim.cardreader:CardReaderSim",
    "keypad": "posagent.drivers.sim.keypad:KeypadSim",
    "host": "posagent.drivers.sim.host:HostSim",
}


def simulator_class(family: str) -> type[Simulator]:
    target = SIMULATORS.get(family)
    if target is None:
        from posagent.config.errors import did_you_mean

        raise ValueError(f"no simulator for '{family}' ({did_you_mean(family, SIMULATORS)})")
    module, _, name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"simulator sim://{family} is not available in this build ({e})") from e
    return cls  # type: ignore[no-any-return]


def validate_knobs(family: str, knobs: dict[str, Any]) -> None:
    """Raise ValueError if the family or a knob is unknown or badly typed."""
    simulator_class(family)(**knobs)


def make_sim(family: str, knobs: dict[str, Any]) -> Simulator:
    return simulator_class(family)(**knobs)


def start_sim(family: str, knobs: dict[str, Any]) -> SimHandle:
    return make_sim(family, knobs).start()


__all__ = ["SIMULATORS", "SimHandle", "Simulator", "make_sim", "simulator_class", "start_sim",
           "validate_knobs"]
