"""What a Megatec UPS left unanswered, remembered in the state dir as ``ups-<name>.json``.

Many units answer only ``Q1``: they ignore the rating ``F`` and the identity ``I``. Asking
costs the driver's ``info_timeout`` each time, so the first silent query is written down
(``{"silent": "F", "asked_unix": ...}``) and not asked again for ``INFO_RETRY_S``, by this
process or any other. The file is a hint: unreadable or malformed means "ask again", and
a unit that answers everything removes it. Writes are atomic (temp file, rename).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os

from posagent.core.statefile import read_json, state_path, write_json

INFO_RETRY_S = 3600.0  # a remembered silent F or I is asked again after this long
QUERIES = ("F", "I")


def memo_path(state_dir: str, device_name: str) -> str:
    return state_path(state_dir, "ups", device_name)


class SilenceMemo:
    """One UPS's memory of the first query (F or I) it left unanswered."""

    def __init__(self, path: str) -> None:
        self.path = path

    def silent_from(self, now: float) -> str | None:
        """``"F"`` or ``"I"`` when that query went unanswered less than INFO_RETRY_S ago."""
        raw = read_json(self.path)
        command, when = raw.get("silent"), raw.get("asked_unix")
        if command not in QUERIES or not isinstance(when, int | float) or isinstance(when, bool):
            return None
        return str(command) if 0 <= now - when < INFO_RETRY_S else None

    def store(self, silent: str | None, now: float) -> None:
        """Remember the first silent query; None (all answered) forgets. Raises OSError."""
        if silent is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        data = {"schema": 1, "silent": silent, "asked_unix": round(now, 3),
                "asked_at": dt.datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds")}
        write_json(self.path, data)
