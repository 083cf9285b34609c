"""`file:///abs/dir`: a local directory standing in for a bucket or an SFTP server.

Writes go to a hidden temporary file in the target's directory, are fsynced, checked (size and
SHA-256 of the bytes on disk) and only then renamed into place with os.replace, so a reader
sees either the old file or the complete new one. Files get `settings.file_mode` (0600 unless
MIPS_FILE_MODE says otherwise).

Temporary files are named by temporary_names.temporary_name
(`.{file}.mipspart-HOST-PID-START-RANDOM.part`); the first write into a directory (and
preflight, for the root) removes the stale ones of ours left there by a process that died
(temporary_names.is_stale_temporary), and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from loader.destinations.base import (
    HASH_CHUNK_SIZE,
    ConfigurationError,
    Destination,
    Digest,
    HashingReader,
    StoredObject,
    TerminalDeliveryError,
    VerificationMismatch,
    check_name,
    file_digest,
    upload_verified,
)
from loader.destinations.settings import TransportSettings
from loader.destinations.temporary_names import is_stale_temporary, temporary_name
from loader.destinations.urls import refuse_credentials_in_url

PROBE_NAME = ".mips-preflight"


class LocalDestination(Destination):
    def __init__(self, url: str, settings: TransportSettings):
        self.root = _root_from_url(url)
        self.settings = settings
        # Directories already cleared of stale temporary files by this destination.
        self._swept: set[Path] = set()

    def describe(self) -> str:
        return f"file://{self.root}"

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
        target = self._path(name)
        expected = Digest(size, sha256.lower())

        def copy_from_source(out: BinaryIO) -> None:
            with open(local_path, "rb") as source:
                reader = HashingReader(source)
                while chunk := reader.read(HASH_CHUNK_SIZE):
                    out.write(chunk)
            self._check_source(local_path, name, expected, reader.digest())

        return upload_verified(
            self,
            name,
            self.settings.verify_attempts,
            lambda: self._write_atomically(target, name, copy_from_source, expected, before_rename),
        )

    def put_bytes(self, name: str, data: bytes) -> StoredObject:
        target = self._path(name)
        expected = Digest.of_bytes(data)
        return upload_verified(
            self,
            name,
            self.settings.verify_attempts,
            lambda: self._write_atomically(target, name, lambda out: out.write(data), expected),
        )

    def get_bytes(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._os_error(error, name) from None

    def stat(self, name: str) -> StoredObject | None:
        try:
            status = self._path(name).stat()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._os_error(error, name) from None
        return _stored(name, status)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        # Walk only the directory the prefix points into, then filter by the full prefix.
        directory = prefix.rpartition("/")[0]
        start = self._path(directory) if directory else self.root
        names = []
        for folder, _subfolders, files in os.walk(start):
            relative_folder = Path(folder).relative_to(self.root).as_posix()
            for file_name in files:
                name = file_name if relative_folder == "." else f"{relative_folder}/{file_name}"
                if name.startswith(prefix):
                    names.append(name)
        for name in sorted(names):
            stored = self.stat(name)
            if stored is not None:
                yield stored

    def read_digest(self, name: str) -> Digest | None:
        try:
            return file_digest(self._path(name))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._os_error(error, name) from None

    def preflight(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not self.root.is_dir():
                raise NotADirectoryError(20, "not a directory")
            self._sweep(self.root)
            probe = self.root / temporary_name(PROBE_NAME)
            descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(descriptor, b"probe\n")
            finally:
                os.close(descriptor)
                with suppress(FileNotFoundError):
                    os.unlink(probe)
        except OSError as error:
            raise self._error(
                ConfigurationError,
                f"directory {self.root} is not usable: {error.strerror or error}",
            ) from None

    def _path(self, name: str) -> Path:
        path = self.root / check_name(name, self.describe())
        # A symlink inside the root must not lead writes outside it.
        real_root = os.path.realpath(self.root)
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            raise ConfigurationError(
                "name resolves outside the destination root", destination=self.describe(), name=name
            )
        return path

    def _write_atomically(
        self,
        target: Path,
        name: str,
        write: Callable[[BinaryIO], object],
        expected: Digest,
        before_rename: Callable[[], object] | None = None,
    ) -> StoredObject:
        mode = self.settings.file_mode
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._sweep(target.parent)
            temporary = str(target.parent / temporary_name(target.name))
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except OSError as error:
            raise self._os_error(error, name) from None
        try:
            with os.fdopen(descriptor, "wb") as out:
                # Exactly the mode asked for, whatever the umask.
                os.fchmod(out.fileno(), mode)
                write(out)
                out.flush()
                os.fsync(out.fileno())
            written = file_digest(Path(temporary))
            if written != expected:
                raise VerificationMismatch(f"wrote {written}, expected {expected}")
            if before_rename is not None:
                before_rename()
            os.replace(temporary, target)
            _fsync_directory(target.parent)
        except OSError as error:
            raise self._os_error(error, name) from None
        finally:
            with suppress(FileNotFoundError):
                os.unlink(temporary)
        return StoredObject(name, expected.size, _modified(target.stat()), expected.sha256)

    def _sweep(self, directory: Path) -> None:
        """Remove stale temporary files of ours from `directory` (once per destination)."""
        if directory in self._swept:
            return
        self._swept.add(directory)
        with suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                with suppress(OSError):
                    if entry.is_file(follow_symlinks=False) and is_stale_temporary(
                        entry.name, entry.stat(follow_symlinks=False).st_mtime
                    ):
                        os.unlink(entry.path)

    def _os_error(self, error: OSError, name: str) -> TerminalDeliveryError:
        # A local disk error (permissions, full disk, read-only) does not fix itself on retry.
        return self._error(TerminalDeliveryError, f"{error.strerror or error}", name)


def _root_from_url(url: str) -> Path:
    refuse_credentials_in_url(url, "file")
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/"):
        raise ConfigurationError(
            f"file URL must name an absolute directory, like file:///abs/dir: {url}"
        )
    if ".." in path.split("/"):
        raise ConfigurationError(f"file URL must not contain '..': {url}")
    return Path(path)


def _stored(name: str, status: os.stat_result) -> StoredObject:
    return StoredObject(name, status.st_size, _modified(status), None)


def _modified(status: os.stat_result) -> datetime:
    return datetime.fromtimestamp(status.st_mtime, tz=timezone.utc)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself survive a crash, not just the file's bytes.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
