"""Delivery records the S3 store would not take, kept on local disk until it does.

A delivery's record (its manifest and its run-log line, loader.run.records) is written to the
S3 store after the file was uploaded. When that write fails after its retries (the store went
away mid-run), the record is not dropped: a file that reached the registry's server must never
go unrecorded. It is kept here, one JSON file per record, written atomically; the next
`export` against the same store writes the pending records there first (`replay`), and
`status` counts them as recorded meanwhile (`pending`), so it tells the truth about what
reached the server even before the store is back.

The journal lives in `$MIPS_JOURNAL_DIR` (default `$XDG_STATE_HOME/mips-loader/journal`, or
`~/.local/state/mips-loader/journal`), one directory per store, named by a hash of the store's
URL (without secrets). Run the scheduled export on the same host, or point MIPS_JOURNAL_DIR at
storage that outlives the host (docs/loader.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loader.destinations.base import Destination
from loader.retry import retrying
from loader.run.records import DeliveryRecord

JOURNAL_ENV = "MIPS_JOURNAL_DIR"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingRecord:
    """A record that waits to be written: under `run_log_key`, and its manifest (if the
    snapshot was written) under `manifest_key`."""

    run_log_key: str
    manifest_key: str | None
    record: DeliveryRecord
    path: Path


def journal_root() -> Path:
    configured = os.environ.get(JOURNAL_ENV)
    if configured:
        return Path(configured).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "mips-loader" / "journal"


class Journal:
    """The pending records of one S3 store."""

    def __init__(self, store: Destination, root: Path | None = None):
        self.store = store
        where = store.describe()
        digest = hashlib.sha256(where.encode()).hexdigest()[:16]
        self.directory = (root or journal_root()) / digest
        self._where = where

    def keep(self, run_log_key: str, manifest_key: str | None, record: DeliveryRecord) -> Path:
        """Write the record to disk, durably (fsync, then rename), and return its file."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.directory / "store.txt").write_text(self._where + "\n")
        body = json.dumps(
            {
                "run_log_key": run_log_key,
                "manifest_key": manifest_key,
                "record": json.loads(record.to_json()),
            },
            sort_keys=True,
        ).encode()
        name = hashlib.sha256(run_log_key.encode()).hexdigest()[:24] + ".json"
        final = self.directory / name
        handle, scratch = tempfile.mkstemp(dir=self.directory, prefix=".pending-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(scratch, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
            raise
        return final

    def pending(self) -> list[PendingRecord]:
        """Every record waiting for this store, oldest first (by run-log key)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                record = DeliveryRecord.from_json(json.dumps(data["record"]))
                found.append(
                    PendingRecord(data["run_log_key"], data.get("manifest_key"), record, path)
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("unreadable journal file %s left alone: %s", path, exc)
        return sorted(found, key=lambda p: p.run_log_key)

    def replay(self) -> int:
        """Write every pending record to the store (a manifest only where no newer one took
        its place); each file is removed once its record is stored. Returns how many were."""
        written = 0
        for pending in self.pending():
            if pending.manifest_key is not None and self._manifest_is_older(pending):
                body = (pending.record.to_json() + "\n").encode()
                retrying(lambda p=pending, b=body: self.store.put_bytes(p.manifest_key, b))
            line = (pending.record.to_json() + "\n").encode()
            retrying(lambda p=pending, b=line: self.store.put_bytes(p.run_log_key, b))
            pending.path.unlink(missing_ok=True)
            written += 1
        return written

    def _manifest_is_older(self, pending: PendingRecord) -> bool:
        """True when the store has no manifest there, or one recorded before this record."""
        assert pending.manifest_key is not None
        current = retrying(lambda: self.store.get_bytes(pending.manifest_key))
        if not current:
            return True
        return DeliveryRecord.from_json(current).recorded_at <= pending.record.recorded_at
