"""What unloading a slice produces, whichever engine it comes from: a private file of the
slice's bytes, its row count (`CsvRowCounter`), SHA-256 and CRC32, in a work directory a
killed run does not leak.

Both checksums are taken in the one pass that writes the file: the SHA-256 is what every
destination verifies the stored bytes against, the CRC32 what S3 checks on receipt (so the S3
upload need not read the file once more before sending it)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from loader.engines.csv_layout import encode_record
from loader.names import STATE_CODE
from loader.processes import process_alive

WORK_DIR_PREFIX = "mips-export-"
# COPY data is handed on ~1 MiB at a time, whoever reads it (libpq in this process, or psql's
# output): one hash, count and write call per block, not per row.
BLOCK_SIZE = 1 << 20
# Columns of the export model that select and order a slice; every other column is the file.
SLICE_COLUMNS = ("performance_year", "state_code", "file_row_number")


@dataclass(frozen=True)
class Spooled:
    path: Path | None
    bytes: int
    sha256: str
    crc32: int


@dataclass(frozen=True)
class UnloadedSlice:
    path: Path | None  # None for a dry run, which keeps no bytes
    rows: int
    bytes: int
    sha256: str
    crc32: int  # of the same bytes, for S3's full-object checksum

    @classmethod
    def of(cls, spooled: Spooled, rows: int) -> UnloadedSlice:
        return cls(spooled.path, rows, spooled.bytes, spooled.sha256, spooled.crc32)


class CsvRowCounter:
    """Counts CSV records in a byte stream: newlines outside double quotes (RFC 4180)."""

    def __init__(self) -> None:
        self.newlines = 0
        self._in_quotes = False

    def feed(self, chunk: bytes) -> None:
        if not self._in_quotes and b'"' not in chunk:
            # The common block (the export quotes almost nothing): no copy, one count.
            self.newlines += chunk.count(b"\n")
            return
        # Splitting on quotes alternates outside/inside segments; "" inside a field toggles twice.
        segments = chunk.split(b'"')
        for index, segment in enumerate(segments):
            if index:
                self._in_quotes = not self._in_quotes
            if not self._in_quotes:
                self.newlines += segment.count(b"\n")


def spool_copy_csv(
    header: Sequence[str], blocks: Iterable[bytes], work_dir: Path | None, year: int, state: str
) -> UnloadedSlice:
    """The header line, then `blocks` of CSV records as COPY writes them, spooled (`spool`);
    the records counted as they pass."""
    counter = CsvRowCounter()

    def counted() -> Iterator[bytes]:
        yield encode_record(header)
        for block in blocks:
            counter.feed(block)
            yield block

    spooled = spool(counted(), work_dir, year, state)
    return UnloadedSlice.of(spooled, rows=counter.newlines)


def spool(blocks: Iterable[bytes], work_dir: Path | None, year: int, state: str) -> Spooled:
    """Streams `blocks` into a new 0600 file in `work_dir`, hashing on the way.

    `work_dir=None` only counts and hashes (a dry run). A failure part-way removes the partial
    file before the error goes on.
    """
    digest = hashlib.sha256()
    crc32 = 0
    size = 0
    if work_dir is None:
        for block in blocks:
            digest.update(block)
            crc32 = zlib.crc32(block, crc32)
            size += len(block)
        return Spooled(None, size, digest.hexdigest(), crc32)
    if not STATE_CODE.fullmatch(state):
        raise ValueError(f"refusing to name a file after state code {state!r}")
    fd, name = tempfile.mkstemp(prefix=f"{int(year)}-{state}-", suffix=".csv", dir=work_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as sink:
            for block in blocks:
                digest.update(block)
                crc32 = zlib.crc32(block, crc32)
                size += len(block)
                sink.write(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Spooled(path, size, digest.hexdigest(), crc32)


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
