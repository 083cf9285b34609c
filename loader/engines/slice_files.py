"""What unloading a slice produces, whichever engine it comes from: a private file of the
slice's bytes, its row count and SHA-256, in a work directory a killed run does not leak."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from loader.destinations.base import process_alive
from loader.names import STATE_CODE

WORK_DIR_PREFIX = "mips-export-"
# Columns of the export model that select and order a slice; every other column is the file.
SLICE_COLUMNS = ("performance_year", "state_code", "file_row_number")


@dataclass(frozen=True)
class UnloadedSlice:
    path: Path | None  # None for a dry run, which keeps no bytes
    rows: int
    bytes: int
    sha256: str


def spool(
    blocks: Iterable[bytes], work_dir: Path | None, year: int, state: str
) -> tuple[Path | None, int, str]:
    """Streams `blocks` into a new 0600 file in `work_dir`, hashing on the way.

    Returns (path, bytes, SHA-256); `work_dir=None` only counts and hashes (a dry run). A
    failure part-way removes the partial file before the error goes on.
    """
    digest = hashlib.sha256()
    size = 0
    if work_dir is None:
        for block in blocks:
            digest.update(block)
            size += len(block)
        return None, size, digest.hexdigest()
    if not STATE_CODE.fullmatch(state):
        raise ValueError(f"refusing to name a file after state code {state!r}")
    fd, name = tempfile.mkstemp(prefix=f"{int(year)}-{state}-", suffix=".csv", dir=work_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as sink:
            for block in blocks:
                digest.update(block)
                size += len(block)
                sink.write(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size, digest.hexdigest()


def private_work_dir() -> tempfile.TemporaryDirectory:
    """A 0700 directory for slice files, removed with everything in it when closed.

    Its name carries our pid (`mips-export-{pid}-XXXX`), so a later run can tell the directory
    of a killed run (SIGKILL leaves it behind) from one in use: see `remove_stale_work_dirs`.
    """
    remove_stale_work_dirs()
    return tempfile.TemporaryDirectory(prefix=f"{WORK_DIR_PREFIX}{os.getpid()}-")


def remove_stale_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove the work directories of dead runs: ours by name and owner, whose pid is gone."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for candidate in parent.glob(f"{WORK_DIR_PREFIX}*-*"):
        pid_text = candidate.name[len(WORK_DIR_PREFIX) :].split("-", 1)[0]
        try:
            info = candidate.lstat()
        except OSError:
            continue
        if (
            not pid_text.isdigit()
            or not candidate.is_dir()
            or candidate.is_symlink()
            or info.st_uid != os.getuid()
            or process_alive(int(pid_text))
        ):
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    return removed
