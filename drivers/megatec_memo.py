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
import json
import os
import re
import tempfile

INFO_RETRY_S = 3600.0  # a remembered silent F or I is asked again after this long
QUERIES = ("F", "I")


def memo_path(state_dir: str, device_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device_name) or "ups"
    return os.path.join(state_dir, f"ups-{safe}.json")


class SilenceMemo:
    """One UPS's memory of the first query (F or I) it left unanswered."""

    def __init__(self, path: str) -> None:
        self.path = path

    def silent_from(self, now: float) -> str | None:
        """``"F"`` or ``"I"`` when that query went unanswered less than INFO_RETRY_S ago."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                raw = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict):
            return None
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
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        data = {"schema": 1, "silent": silent, "asked_unix": round(now, 3),
                "asked_at": dt.datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds")}
        fd, tmp = tempfile.mkstemp(prefix=".ups-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
