"""Small state files: read a JSON object leniently, write any file atomically.

An atomic write goes to a temporary file in the same directory, is flushed to disk and
renamed over the target, so a reader (another process, node_exporter, the next boot after
a power cut) sees the old file or the new one, never half of either.

Run as root in a directory someone else owns (``sudo posagent selftest`` in the service's
state dir), every file made is given to the directory's owner: a root-owned file of mode
600 there would be one the service can no longer read (a printer's counters, a battery's
tests) or lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from typing import Any


def state_path(state_dir: str, prefix: str, device_name: str) -> str:
    """``<state_dir>/<prefix>-<name>.json`` with the name made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device_name) or prefix
    return os.path.join(state_dir, f"{prefix}-{safe}.json")


def dir_owner(directory: str) -> tuple[int, int] | None:
    """(uid, gid) of ``directory`` when this process is root and the directory is not
    root's (files made in it go to that owner); else None."""
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return None if st.st_uid == 0 else (st.st_uid, st.st_gid)


def give_to_dir_owner(paths: Iterable[str], directory: str) -> None:
    """Root's files among ``paths`` (made in ``directory``) go to the directory's owner."""
    owner = dir_owner(directory)
    if owner is None:
        return
    for path in paths:
        with contextlib.suppress(OSError):
            if os.stat(path).st_uid == 0:
                os.chown(path, *owner)


def read_json(path: str) -> dict[str, Any]:
    """The JSON object in ``path``; {} when absent, unreadable, corrupt or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def write_atomic(path: str, text: str, *, mode: int | None = None, make_dir: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically (temp file, fsync, rename). Raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    if make_dir:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        owner = dir_owner(directory)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str, data: dict[str, Any], *, indent: int | None = None) -> None:
    """``data`` as JSON (sorted keys, final newline), written atomically. Raises OSError."""
    write_atomic(path, json.dumps(data, indent=indent, sort_keys=True) + "\n")
