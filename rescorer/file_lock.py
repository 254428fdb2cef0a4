"""An exclusive, non-blocking lock on a file (flock), held while the returned handle is open.

flock locks belong to the open file: a forked child that inherits the handle holds the lock
too, and it is released when the last holder closes it or exits.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import TextIO


def try_exclusive_lock(path: str | Path) -> TextIO | None:
    """The open, locked file at `path` (created if missing), or None when another open file
    holds the lock. OSError from opening the file (no permission, no directory) propagates."""
    handle = open(path, "a")  # noqa: SIM115 - held open as long as the lock is wanted
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
