"""The name of an upload in progress, and when such a file is stale.

`.{file}.mipspart-{HOST}-{PID}-{START}-{RANDOM}.part`: a hidden sibling of the final name that
says who wrote it (a tag of the host, the process) and since when, so a later run can tell a
file whose writer is gone from one still being written (docs/destinations.md).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

from loader.processes import process_alive

# Our temporary file written by another host (or whose writer we cannot check) is stale after
# this long: no upload of ours lasts hours.
STALE_PART_AGE_SECONDS = 6 * 60 * 60
PART_MARKER = "mipspart"

# `.{file}.mipspart-{host tag}-{pid}-{start, epoch s}-{random}.part`: ours, and enough to judge
# whether the upload that wrote it can still be running.
_PART_PATTERN = re.compile(
    rf"^\.(?P<final>.+)\.{PART_MARKER}-(?P<host>[0-9a-f]{{8}})-(?P<pid>[1-9][0-9]{{0,9}})"
    r"-(?P<started>[0-9]{10})-(?P<token>[0-9a-f]{8})\.part$"
)


def host_tag(hostname: str | None = None) -> str:
    """Eight hex digits standing for this host in temporary names (the name itself stays here)."""
    name = socket.gethostname() if hostname is None else hostname
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def temporary_name(final_name: str, *, now: float | None = None) -> str:
    """A hidden sibling of `final_name` for an upload in progress, recognisably ours.

    `dir/.file.mipspart-HOST-PID-START-RANDOM.part`: HOST is host_tag(), PID this process,
    START the epoch second the upload began.
    """
    path = PurePosixPath(final_name)
    started = int(time.time() if now is None else now)
    token = os.urandom(4).hex()
    marker = f"{PART_MARKER}-{host_tag()}-{os.getpid()}-{started:010d}-{token}"
    return str(path.with_name(f".{path.name}.{marker}.part"))


@dataclass(frozen=True)
class PartName:
    """What a temporary name of ours says about its writer."""

    final: str
    host: str
    pid: int
    started: int


def parse_temporary_name(file_name: str) -> PartName | None:
    """The writer of a temporary file of ours (a bare file name), or None if it is not ours."""
    match = _PART_PATTERN.match(file_name)
    if match is None:
        return None
    return PartName(match["final"], match["host"], int(match["pid"]), int(match["started"]))


def is_stale_temporary(
    file_name: str,
    modified: float | None,
    *,
    now: float | None = None,
    local_host: str | None = None,
    max_age: float = STALE_PART_AGE_SECONDS,
) -> bool:
    """Whether `file_name` is a temporary file of ours that no running upload can be using.

    Ours and stale: written from this host by a process that is no longer alive; or, from any
    host, started more than `max_age` ago and not modified for as long. Anything else (not
    ours, a live writer on this host, a recent file from another host) is kept.
    """
    part = parse_temporary_name(file_name)
    if part is None:
        return False
    now = time.time() if now is None else now
    if part.host == (local_host or host_tag()) and not process_alive(part.pid):
        return True
    last_touched = max(part.started, modified or 0)
    return now - last_touched > max_age
