"""The destination interface, its errors, and how what it stored is verified.

A destination is a place that stores named files: a local directory, an S3 bucket and prefix,
or a directory on an SFTP server. It knows how to move bytes there safely and nothing about
MIPS: which names to use and when to deliver are decided by the caller. Beside this module:
`settings.py` (what a destination needs besides its URL, from the environment), `urls.py`
(credentials never in a URL, URLs shown without secrets), `temporary_names.py` (the names of
uploads in progress, and when one is stale).
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeVar

from loader import errors
from loader.errors import MipsError, TerminalError, TransientError

logger = logging.getLogger(__name__)

HASH_CHUNK_SIZE = 1024 * 1024

T = TypeVar("T")


class DeliveryError(MipsError):
    """A delivery failed; the message names the destination and object and is safe to log."""

    def __init__(self, reason: str, *, destination: str | None = None, name: str | None = None):
        self.reason = reason
        self.destination = destination
        self.name = name
        where = ": ".join(part for part in (destination, name) if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class TransientDeliveryError(DeliveryError, TransientError):
    """Worth retrying: dropped connections, timeouts, server errors, throttling."""


class UnreachableError(TransientDeliveryError, errors.UnreachableError):
    """The store could not be reached at all (connection refused, timed out, name not
    resolved): retried like any transient error, but once the retries are spent a run stops
    starting deliveries that need it."""


class TerminalDeliveryError(DeliveryError, TerminalError):
    """Retrying will not help: bad credentials, unknown host key, permissions, missing bucket."""


class ConfigurationError(TerminalDeliveryError, errors.ConfigurationError):
    """The URL or the settings are wrong; nothing was attempted."""


@dataclass(frozen=True)
class StoredObject:
    """An object as the destination reports it; `name` is relative to the destination root.

    `checksum` is the SHA-256 (hex) of the stored bytes when the store vouches for it, else None.
    """

    name: str
    size: int
    modified: datetime | None
    checksum: str | None


class Destination(ABC):
    """Stores named files under one root. Use as a context manager, or call close()."""

    # Whether `stat` gives the SHA-256 of the stored bytes for objects this code wrote (S3,
    # from the object's metadata). Where it does, an object without one is not proven ours.
    vouches_for_checksums = False

    @abstractmethod
    def describe(self) -> str:
        """The destination's URL for logs and messages, without any secret."""

    @abstractmethod
    def put_file(
        self,
        local_path: Path,
        name: str,
        *,
        size: int,
        sha256: str,
        crc32: int | None = None,
        before_rename: Callable[[], object] | None = None,
    ) -> StoredObject:
        """Upload a finished local file as `name`, atomically, and verify what was stored.

        `size` and `sha256` are what the stored bytes must be; `crc32`, when the caller took it
        in the same pass as the SHA-256, spares a backend that sends a CRC32 (S3) reading the
        file once more. `before_rename`, when given, is called once the bytes are stored and
        verified under a temporary name, just before they take `name`; if it raises, nothing
        is left under either name and its exception propagates. A store that writes in place
        (S3: a PUT is atomic at the key) calls it before it writes."""

    def start_put_file(
        self, local_path: Path, name: str, *, size: int, sha256: str, crc32: int | None = None
    ) -> StartedPut:
        """`put_file`, begun now where the store can go on by itself (S3's transfer threads)
        while the caller does something else; here, where it cannot, begun by the first
        `result()`. Use as a context manager: leaving it unfinished cancels the upload."""
        return StartedPut(
            put=lambda: self.put_file(local_path, name, size=size, sha256=sha256, crc32=crc32)
        )

    @abstractmethod
    def put_bytes(self, name: str, data: bytes) -> StoredObject:
        """Store a small object (a manifest, a run-log line) as `name`, atomically."""

    @abstractmethod
    def get_bytes(self, name: str) -> bytes | None:
        """Read a small object, or None if there is none."""

    @abstractmethod
    def stat(self, name: str) -> StoredObject | None:
        """Describe `name`, or None if there is none."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object whose name starts with `prefix`, recursively, in name order."""

    @abstractmethod
    def read_digest(self, name: str) -> Digest | None:
        """Size and SHA-256 of the stored bytes of `name`, read back in chunks; None if absent."""

    @abstractmethod
    def preflight(self) -> None:
        """Prove the destination usable before anything is written.

        Raises ConfigurationError (URL, credentials, host key, permissions, missing bucket or
        directory) or TransientDeliveryError (refused, timed out); messages are one line.
        """

    def close(self) -> None:
        """Release connections; the destination may not be used afterwards."""
        return None

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # Helpers for implementations: one wording for the same failure everywhere.

    def _error(self, kind: type[DeliveryError], reason: str, name: str | None = None):
        return kind(reason, destination=self.describe(), name=name)

    def _check_source(self, local_path: Path, name: str, expected: Digest, actual: Digest) -> None:
        """The bytes read from disk must be the ones the caller described."""
        if actual != expected:
            raise self._error(
                TerminalDeliveryError,
                f"local file {local_path} does not match its description: read {actual}, "
                f"expected {expected}",
                name,
            )


class StartedPut:
    """A `put_file` under way (`Destination.start_put_file`). `result()` is the stored object
    as `put_file` returns it, or its exception: the first call ends the upload that was
    started (`finish`), a later one (a retry of a failed first) uploads again from the start
    (`put`). Leaving the `with` block before a call finished cancels what is under way."""

    def __init__(
        self,
        *,
        put: Callable[[], StoredObject],
        finish: Callable[[], StoredObject] | None = None,
        cancel: Callable[[BaseException | None], None] = lambda error: None,
    ):
        self._put = put
        self._finish = finish
        self._cancel = cancel

    def result(self) -> StoredObject:
        finish, self._finish = self._finish, None
        return finish() if finish is not None else self._put()

    def __enter__(self) -> StartedPut:
        return self

    def __exit__(self, exc_type, error, traceback) -> None:
        self._finish = None
        self._cancel(error)


@dataclass(frozen=True)
class Digest:
    """Size and SHA-256 (lower-case hex) of some bytes."""

    size: int
    sha256: str

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls(len(data), hashlib.sha256(data).hexdigest())

    def __str__(self) -> str:
        return f"{self.size} bytes, sha256 {self.sha256}"


class HashingReader:
    """Wraps a binary file so whatever is read through it is counted and hashed on the way."""

    def __init__(self, source: BinaryIO):
        self._source = source
        self._digest = hashlib.sha256()
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        self._digest.update(chunk)
        self._size += len(chunk)
        return chunk

    def digest(self) -> Digest:
        return Digest(self._size, self._digest.hexdigest())


class VerificationMismatch(Exception):
    """Raised by an implementation's upload attempt when the stored object does not match.

    With `expected` and `stored` the message names both digests (and `cause`, if any).
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        expected: Digest | None = None,
        stored: Digest | None = None,
        cause: str | None = None,
    ):
        if message is None:
            message = f"stored {stored}, expected {expected}"
            if cause:
                message += f" ({cause})"
        super().__init__(message)
        self.expected = expected
        self.stored = stored


def upload_verified(
    destination: Destination, name: str, attempts: int, upload_once: Callable[[], T]
) -> T:
    """Run `upload_once` until its verification passes; a store that keeps disagreeing is fatal."""
    for attempt in range(1, attempts + 1):
        try:
            return upload_once()
        except VerificationMismatch as mismatch:
            logger.warning(
                "%s: %s: verification failed (attempt %d of %d): %s",
                destination.describe(),
                name,
                attempt,
                attempts,
                mismatch,
            )
            last = mismatch
    raise destination._error(
        TerminalDeliveryError, f"verification failed after {attempts} uploads: {last}", name
    )


def check_name(name: str, destination: str) -> PurePosixPath:
    """A relative, normalised name that cannot climb out of the destination root."""
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or "\\" in name
        or "\0" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise ConfigurationError(
            "object name must be a relative path without '.', '..' or empty segments",
            destination=destination,
            name=repr(name),
        )
    return path


def file_digest(path: Path) -> Digest:
    """Size and SHA-256 of a file, read in chunks so big files never sit in memory."""
    with open(path, "rb") as source:
        reader = HashingReader(source)
        while reader.read(HASH_CHUNK_SIZE):
            pass
    return reader.digest()
