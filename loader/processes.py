"""Whether a process of this machine still runs: the writer of a temporary file or of a work
directory, judged before what it left is removed (destinations and engines alike)."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running process on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as status:
            # "pid (comm) S ...": the state letter follows the last ')'.
            return status.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
