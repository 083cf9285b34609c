"""The destination interface, its errors, transport settings and the retry helper.

A destination is a place that stores named files: a local directory, an S3 bucket and prefix,
or a directory on an SFTP server. It knows how to move bytes there safely and nothing about
MIPS: which names to use and when to deliver are decided by the caller.
"""

from __future__ import annotations

import hashlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

from loader import errors
from loader.errors import MipsError, TerminalError, TransientError

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
HASH_CHUNK_SIZE = MiB
S3_SSE_CHOICES = ("AES256", "aws:kms")

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


@dataclass(frozen=True)
class TransportSettings:
    """Everything a destination needs besides its URL; built once, from the environment."""

    connect_timeout: float = 30.0
    io_timeout: float = 120.0
    keepalive_interval: int = 30
    # Re-uploads inside one put_file when the stored object fails verification.
    verify_attempts: int = 2
    s3_endpoint_url: str | None = None
    s3_sse: str | None = None
    s3_kms_key_id: str | None = None
    s3_multipart_threshold: int = 64 * MiB
    s3_multipart_chunksize: int = 16 * MiB
    s3_max_concurrency: int = 4
    # Tries of one request inside botocore (first try included); `retrying` wraps around them.
    s3_max_attempts: int = 3
    sftp_known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts"))
    sftp_key_file: Path | None = None
    sftp_key_passphrase: str | None = field(default=None, repr=False)
    sftp_password: str | None = field(default=None, repr=False)
    sftp_password_file: Path | None = None

    def __post_init__(self) -> None:
        if self.s3_sse is not None and self.s3_sse not in S3_SSE_CHOICES:
            raise ConfigurationError(
                f"S3 server-side encryption must be one of {', '.join(S3_SSE_CHOICES)}, "
                f"got {self.s3_sse!r} (MIPS_S3_SSE)"
            )
        if self.s3_kms_key_id and self.s3_sse != "aws:kms":
            raise ConfigurationError("MIPS_S3_KMS_KEY_ID is set but MIPS_S3_SSE is not aws:kms")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> TransportSettings:
        """Read the MIPS_* variables (see docs/destinations.md); `overrides` win over them."""
        env = os.environ if environ is None else environ

        def path_or_none(variable: str) -> Path | None:
            return Path(env[variable]).expanduser() if env.get(variable) else None

        from_environment = {
            "s3_endpoint_url": env.get("MIPS_S3_ENDPOINT_URL") or None,
            "s3_sse": env.get("MIPS_S3_SSE") or None,
            "s3_kms_key_id": env.get("MIPS_S3_KMS_KEY_ID") or None,
            "sftp_known_hosts": path_or_none("MIPS_SFTP_KNOWN_HOSTS")
            or Path("~/.ssh/known_hosts").expanduser(),
            "sftp_key_file": path_or_none("MIPS_SFTP_KEY_FILE"),
            "sftp_key_passphrase": env.get("MIPS_SFTP_KEY_PASSPHRASE") or None,
            "sftp_password": env.get("MIPS_SFTP_PASSWORD") or None,
            "sftp_password_file": path_or_none("MIPS_SFTP_PASSWORD_FILE"),
        }
        return cls(**{**from_environment, **overrides})


class Destination(ABC):
    """Stores named files under one root. Use as a context manager, or call close()."""

    @abstractmethod
    def describe(self) -> str:
        """The destination's URL for logs and messages, without any secret."""

    @abstractmethod
    def put_file(self, local_path: Path, name: str, *, size: int, sha256: str) -> StoredObject:
        """Upload a finished local file as `name`, atomically, and verify what was stored."""

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
    """Raised by an implementation's upload attempt when the stored object does not match."""


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


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


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


def temporary_name(final_name: str) -> str:
    """A hidden sibling of `final_name` for uploads in progress: `dir/.file.RANDOM.part`."""
    path = PurePosixPath(final_name)
    token = os.urandom(6).hex()
    return str(path.with_name(f".{path.name}.{token}.part"))


def file_digest(path: Path) -> Digest:
    """Size and SHA-256 of a file, read in chunks so big files never sit in memory."""
    with open(path, "rb") as source:
        reader = HashingReader(source)
        while reader.read(HASH_CHUNK_SIZE):
            pass
    return reader.digest()
