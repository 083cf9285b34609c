"""The destination interface, its errors, transport settings and the retry helper.

A destination is a place that stores named files: a local directory, an S3 bucket and prefix,
or a directory on an SFTP server. It knows how to move bytes there safely and nothing about
MIPS: which names to use and when to deliver are decided by the caller.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeVar

from loader import errors
from loader.errors import MipsError, TerminalError, TransientError

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
HASH_CHUNK_SIZE = MiB
S3_SSE_CHOICES = ("AES256", "aws:kms")
DEFAULT_FILE_MODE = 0o600
# Bits a delivered file must never have: write or execute for group or others.
FORBIDDEN_MODE_BITS = 0o033
# Our temporary file written by another host (or whose writer we cannot check) is stale after
# this long: no upload of ours lasts hours.
STALE_PART_AGE_SECONDS = 6 * 60 * 60
PART_MARKER = "mipspart"

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
    # Mode of files created on the SFTP server and in file:// directories (MIPS_FILE_MODE).
    file_mode: int = DEFAULT_FILE_MODE
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
        check_file_mode(self.file_mode)

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
        if env.get("MIPS_FILE_MODE"):
            from_environment["file_mode"] = parse_file_mode(env["MIPS_FILE_MODE"])
        return cls(**{**from_environment, **overrides})


def parse_file_mode(text: str) -> int:
    """MIPS_FILE_MODE: octal like 0600 or 0640; never write or execute for group or others."""
    digits = text.strip()
    digits = digits[2:] if digits.lower().startswith("0o") else digits
    if not re.fullmatch(r"[0-7]{3,4}", digits):
        raise ConfigurationError(
            f"MIPS_FILE_MODE must be an octal file mode like 0600 or 0640, got {text!r}"
        )
    return check_file_mode(int(digits, 8))


def check_file_mode(mode: int) -> int:
    if not 0 <= mode <= 0o777 or mode & FORBIDDEN_MODE_BITS or mode & 0o600 != 0o600:
        raise ConfigurationError(
            f"file mode {mode:04o} is not allowed (MIPS_FILE_MODE): the owner needs read and "
            "write, group and others may at most read (e.g. 0600, 0640, 0644)"
        )
    return mode


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
        self, local_path: Path, name: str, *, size: int, sha256: str, crc32: int | None = None
    ) -> StoredObject:
        """Upload a finished local file as `name`, atomically, and verify what was stored.

        `size` and `sha256` are what the stored bytes must be; `crc32`, when the caller took it
        in the same pass as the SHA-256, spares a backend that sends a CRC32 (S3) reading the
        file once more."""

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


def redact_url(url: str) -> str:
    """The URL for messages: whatever sits before the last '@' becomes `user:***` or `***`.

    No parsing is involved, so a password holding '/', '?', '#' or '@' is hidden too; the user
    name is kept only when it is plainly one (letters, digits and `._~+-`).
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return url
    user, colon, _secret = userinfo.partition(":")
    safe_user = re.fullmatch(r"[A-Za-z0-9._~+-]+", user) is not None
    if safe_user and colon:
        hidden = f"{user}:***"
    elif safe_user and not colon:
        hidden = user
    else:
        hidden = "***"
    return f"{scheme}{separator}{hidden}@{after}"


def refuse_credentials_in_url(url: str, scheme: str) -> None:
    """Refuse a URL carrying a password (sftp) or any user information (s3, file).

    Decided on the raw text, not on urlsplit, which ends the host at the first '/', '?' or '#'
    and so misses a password containing one. The message never repeats the URL.
    """
    _, separator, rest = url.partition("://")
    if not separator:
        _, _, rest = url.partition(":")
    if "@" not in rest:
        return
    if scheme == "s3":
        raise ConfigurationError(
            "an s3:// URL must not carry credentials or a user name ('@' found): write it as "
            "s3://bucket/prefix and give credentials through the AWS chain (environment, "
            "profile or instance role); write an '@' in the prefix as %40"
        )
    if scheme == "file":
        raise ConfigurationError(
            "a file:// URL must not carry a user or password ('@' found): write it as "
            "file:///abs/dir; write an '@' in the path as %40"
        )
    userinfo = rest.rpartition("@")[0]
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if ":" in userinfo or "@" in rest[authority_end:]:
        raise ConfigurationError(
            "an sftp:// URL must not carry a password (a ':' before the '@', or an '@' after "
            "the host): write it as sftp://user@host[:port]/dir and set "
            "MIPS_SFTP_PASSWORD_FILE or MIPS_SFTP_KEY_FILE; write an '@' in the path as %40"
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


def file_digest(path: Path) -> Digest:
    """Size and SHA-256 of a file, read in chunks so big files never sit in memory."""
    with open(path, "rb") as source:
        reader = HashingReader(source)
        while reader.read(HASH_CHUNK_SIZE):
            pass
    return reader.digest()
