"""Where a test run keeps its temporary files: a RAM disk, when the machine has one with room.

Every worker's cluster data, dbt targets and stores (≈ 1.5 GB, 35,000 files a run) are created
and deleted all the time by PostgreSQL, dbt and the tests; on a disk mounted with `discard`
(this machine's) each delete waits on the device (≈ 7 s of a run, 3.7 s of them in pytest's
removal of an old run at the end). `MIPS_TEST_BASETEMP=disk` keeps pytest's own default.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import IO, NamedTuple

RAM_DISK = Path("/dev/shm")
RAM_DISK_ROOM = 6 * 2**30


class RamBasetemp(NamedTuple):
    path: Path
    lock: IO  # held (open) while the run uses `path`


def ram_basetemp(
    checkout: Path, ram_disk: Path = RAM_DISK, room: int = RAM_DISK_ROOM
) -> RamBasetemp | None:
    """This checkout's directory on the RAM disk (pytest empties it at the start of a run),
    or None: no RAM disk with `room` free, MIPS_TEST_BASETEMP=disk, or another run of this
    checkout holds its lock (the run would otherwise empty the other's directory)."""
    if os.environ.get("MIPS_TEST_BASETEMP") == "disk" or not ram_disk.is_dir():
        return None
    try:
        free = shutil.disk_usage(ram_disk).free
    except OSError:
        return None
    if free < room or not os.access(ram_disk, os.W_OK):
        return None
    tag = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:10]
    name = f"healthmonix-mips-tests-{os.getuid()}-{tag}"
    lock = open(ram_disk / f"{name}.lock", "a")  # noqa: SIM115 (held until the run ends)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    return RamBasetemp(ram_disk / name, lock)
