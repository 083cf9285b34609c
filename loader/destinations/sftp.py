"""`sftp://user@host[:port]/remote/dir`: files in a directory on an SFTP server (paramiko).

Credentials never come from the URL (a password there is refused): `MIPS_SFTP_KEY_FILE` (with
`MIPS_SFTP_KEY_PASSPHRASE` if the key is encrypted), or `MIPS_SFTP_PASSWORD` /
`MIPS_SFTP_PASSWORD_FILE`. Host keys are checked against `MIPS_SFTP_KNOWN_HOSTS` (default
~/.ssh/known_hosts) and nothing else; an unknown host or a changed key is a terminal error.

An upload streams the local file with paramiko's pipelined `putfo` to `.{name}.{random}.part`
in the target directory, checks the remote size, then renames it over the final name with the
`posix-rename@openssh.com` extension, which replaces atomically. A server that answers that
request with "operation unsupported" gets remove-then-rename instead, leaving a moment where
the name is absent but never a partial file under it. On failure the temporary file is
removed; if the connection is gone, it is removed after the next reconnect.

SFTP (version 3, as OpenSSH speaks it) offers no standard checksum of a remote file, so
uploads are verified by size only; the SHA-256 of what was streamed is checked against the
caller's, which proves the right bytes were sent.
"""

from __future__ import annotations

import errno
import io
import posixpath
import stat as stat_mode
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import paramiko
from paramiko.sftp import SFTP_OP_UNSUPPORTED

from loader.destinations.base import (
    ConfigurationError,
    DeliveryError,
    Destination,
    Digest,
    HashingReader,
    StoredObject,
    TerminalDeliveryError,
    TransientDeliveryError,
    TransportSettings,
    VerificationMismatch,
    check_name,
    redact_url,
    temporary_name,
    upload_verified,
)

DEFAULT_PORT = 22
# Errors a server gives for requests that will fail the same way next time.
TERMINAL_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EROFS,
}


class SFTPDestination(Destination):
    def __init__(self, url: str, settings: TransportSettings):
        parts = urlsplit(url)
        if parts.password is not None:
            raise ConfigurationError(
                "a password in the SFTP URL is not accepted; set MIPS_SFTP_PASSWORD_FILE or "
                f"MIPS_SFTP_KEY_FILE instead: {redact_url(url)}"
            )
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ConfigurationError(f"SFTP URL has a bad port: {redact_url(url)}") from None
        directory = unquote(parts.path) or "/"
        if not parts.username or not parts.hostname or ".." in directory.split("/"):
            raise ConfigurationError(
                f"SFTP URL must look like sftp://user@host[:port]/remote/dir: {redact_url(url)}"
            )
        self.username = unquote(parts.username)
        self.host = parts.hostname
        self.port = port
        self.directory = posixpath.normpath(directory)
        self.settings = settings
        self._ssh: paramiko.SSHClient | None = None
        self._sftp: _SFTPClient | None = None
        self._posix_rename_supported = True
        # Temporary files a dropped connection kept us from removing; removed on reconnect.
        self._orphans: set[str] = set()

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{self.username}@{host}:{self.port}{self.directory}"

    def put_file(self, local_path: Path, name: str, *, size: int, sha256: str) -> StoredObject:
        expected = Digest(size, sha256.lower())
        return self._upload(name, expected, lambda: open(local_path, "rb"), local_path)

    def put_bytes(self, name: str, data: bytes) -> StoredObject:
        expected = Digest.of_bytes(data)
        return self._upload(name, expected, lambda: io.BytesIO(data), Path("<bytes>"))

    def get_bytes(self, name: str) -> bytes | None:
        remote = self._remote_path(name)
        with self._mapped_errors(name):
            try:
                with self._connection().open(remote, "rb") as remote_file:
                    return remote_file.read()
            except FileNotFoundError:
                return None

    def stat(self, name: str) -> StoredObject | None:
        remote = self._remote_path(name)
        with self._mapped_errors(name):
            try:
                attributes = self._connection().stat(remote)
            except FileNotFoundError:
                return None
        return _stored(name, attributes)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        directory = prefix.rpartition("/")[0]
        with self._mapped_errors(prefix or None):
            found = self._walk(directory, prefix)
        for name in sorted(found):
            yield found[name]

    def close(self) -> None:
        self._disconnect()

    # Uploading.

    def _upload(
        self,
        name: str,
        expected: Digest,
        open_source: Callable[[], BinaryIO],
        source_label: Path,
    ) -> StoredObject:
        remote = self._remote_path(name)

        def upload_once() -> StoredObject:
            try:
                source = open_source()
            except OSError as error:
                raise self._error(
                    TerminalDeliveryError, f"cannot read {source_label}: {error.strerror}", name
                ) from None
            with source, self._mapped_errors(name):
                sftp = self._connection()
                self._make_parents(sftp, posixpath.dirname(remote))
                temporary = posixpath.join(self.directory, temporary_name(name))
                try:
                    reader = HashingReader(source)
                    sftp.putfo(reader, temporary, file_size=expected.size, confirm=False)
                    self._check_source(source_label, name, expected, reader.digest())
                    stored_size = sftp.stat(temporary).st_size
                    if stored_size != expected.size:
                        raise VerificationMismatch(
                            f"stored size {stored_size}, expected {expected.size}"
                        )
                    self._rename_into_place(sftp, temporary, remote)
                except BaseException:
                    self._discard(temporary)
                    raise
                return _stored(name, sftp.stat(remote))

        return upload_verified(self, name, self.settings.verify_attempts, upload_once)

    def _rename_into_place(self, sftp: _SFTPClient, temporary: str, remote: str) -> None:
        if self._posix_rename_supported:
            try:
                sftp.posix_rename(temporary, remote)
                return
            except _OperationUnsupported:
                self._posix_rename_supported = False
        # Plain SFTP rename refuses to replace an existing file, so clear the way first.
        with suppress(FileNotFoundError):
            sftp.remove(remote)
        sftp.rename(temporary, remote)

    def _discard(self, temporary: str) -> None:
        try:
            if self._sftp is not None:
                self._sftp.remove(temporary)
                return
        except FileNotFoundError:
            return
        except Exception:  # noqa: S110 - best effort; the name is kept for the next connection
            pass
        self._orphans.add(temporary)

    def _make_parents(self, sftp: _SFTPClient, directory: str) -> None:
        # Only below the configured directory: a missing root means a wrong URL, not a new tree.
        if directory == self.directory:
            return
        try:
            sftp.stat(directory)
        except FileNotFoundError:
            self._make_parents(sftp, posixpath.dirname(directory))
            sftp.mkdir(directory)

    def _walk(self, relative_directory: str, prefix: str) -> dict[str, StoredObject]:
        sftp = self._connection()
        found: dict[str, StoredObject] = {}
        try:
            entries = sftp.listdir_attr(posixpath.join(self.directory, relative_directory))
        except FileNotFoundError:
            return found
        for entry in entries:
            name = posixpath.join(relative_directory, entry.filename)
            if stat_mode.S_ISDIR(entry.st_mode or 0):
                if name.startswith(prefix) or prefix.startswith(name + "/"):
                    found.update(self._walk(name, prefix))
            elif name.startswith(prefix):
                found[name] = _stored(name, entry)
        return found

    def _remote_path(self, name: str) -> str:
        return posixpath.join(self.directory, str(check_name(name, self.describe())))

    # Connecting.

    def _connection(self) -> _SFTPClient:
        if self._sftp is None:
            self._connect()
        assert self._sftp is not None
        return self._sftp

    def _connect(self) -> None:
        known_hosts = self.settings.sftp_known_hosts.expanduser()
        if not known_hosts.is_file():
            raise self._error(
                ConfigurationError,
                f"known_hosts file {known_hosts} does not exist (MIPS_SFTP_KNOWN_HOSTS)",
            )
        credentials = self._credentials()
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(known_hosts))
        except (OSError, paramiko.SSHException) as error:
            raise self._error(
                ConfigurationError, f"cannot read known_hosts file {known_hosts}: {error}"
            ) from None
        client.set_missing_host_key_policy(_RejectUnknownHost())
        try:
            client.connect(
                self.host,
                self.port,
                username=self.username,
                timeout=self.settings.connect_timeout,
                banner_timeout=self.settings.connect_timeout,
                auth_timeout=self.settings.connect_timeout,
                channel_timeout=self.settings.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
                **credentials,
            )
            transport = client.get_transport()
            assert transport is not None
            transport.set_keepalive(self.settings.keepalive_interval)
            sftp = _SFTPClient.from_transport(transport)
            assert sftp is not None
            sftp.get_channel().settimeout(self.settings.io_timeout)
        except BaseException:
            client.close()
            raise
        self._ssh, self._sftp = client, sftp
        self._remove_orphans(sftp)

    def _credentials(self) -> dict:
        settings = self.settings
        credentials: dict = {}
        if settings.sftp_key_file:
            try:
                passphrase = settings.sftp_key_passphrase
                credentials["pkey"] = paramiko.PKey.from_path(
                    settings.sftp_key_file, passphrase.encode() if passphrase else None
                )
            except (paramiko.PasswordRequiredException, TypeError):
                # cryptography raises TypeError for an encrypted key given no passphrase.
                raise self._error(
                    ConfigurationError,
                    f"key {settings.sftp_key_file} is encrypted; set MIPS_SFTP_KEY_PASSPHRASE",
                ) from None
            except (OSError, paramiko.SSHException, ValueError) as error:
                raise self._error(
                    ConfigurationError,
                    f"cannot load key {settings.sftp_key_file} (MIPS_SFTP_KEY_FILE): "
                    f"{type(error).__name__}",
                ) from None
        if settings.sftp_password:
            credentials["password"] = settings.sftp_password
        elif settings.sftp_password_file:
            try:
                credentials["password"] = settings.sftp_password_file.read_text().rstrip("\r\n")
            except OSError as error:
                raise self._error(
                    ConfigurationError,
                    f"cannot read MIPS_SFTP_PASSWORD_FILE {settings.sftp_password_file}: "
                    f"{error.strerror}",
                ) from None
        if not credentials:
            raise self._error(
                ConfigurationError,
                "no SFTP credentials: set MIPS_SFTP_KEY_FILE, MIPS_SFTP_PASSWORD_FILE "
                "or MIPS_SFTP_PASSWORD",
            )
        return credentials

    def _remove_orphans(self, sftp: _SFTPClient) -> None:
        for temporary in sorted(self._orphans):
            with suppress(OSError):
                sftp.remove(temporary)
            self._orphans.discard(temporary)

    def _disconnect(self) -> None:
        sftp, ssh = self._sftp, self._ssh
        self._sftp = self._ssh = None
        for connection in (sftp, ssh):
            if connection is not None:
                with suppress(Exception):
                    connection.close()

    @contextmanager
    def _mapped_errors(self, name: str | None):
        """Turn paramiko's exceptions into delivery errors; drop the connection if transient."""
        try:
            yield
        except DeliveryError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as error:
            mapped = self._classify(error, name)
            if isinstance(mapped, TransientDeliveryError):
                self._disconnect()
            raise mapped from error

    def _classify(self, error: BaseException, name: str | None) -> DeliveryError:
        address = f"{self.host}:{self.port}"
        known_hosts = self.settings.sftp_known_hosts
        if isinstance(error, _UnknownHostKey):
            return self._error(
                TerminalDeliveryError, f"host key for {address} not in {known_hosts}", name
            )
        if isinstance(error, paramiko.BadHostKeyException):
            return self._error(
                TerminalDeliveryError,
                f"host key for {address} changed: server offered "
                f"{error.key.fingerprint}, {known_hosts} has {error.expected_key.fingerprint}; "
                "confirm with the server's owner before updating known_hosts",
                name,
            )
        if isinstance(error, paramiko.AuthenticationException):
            return self._error(
                TerminalDeliveryError,
                f"authentication failed for {self.username} at {address}: {error}",
                name,
            )
        if isinstance(error, OSError) and error.errno in TERMINAL_ERRNOS:
            reason = error.strerror or errno.errorcode.get(error.errno, str(error.errno))
            return self._error(TerminalDeliveryError, f"SFTP server refused: {reason}", name)
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return self._error(TransientDeliveryError, f"SFTP connection failed ({detail})", name)


class _UnknownHostKey(paramiko.SSHException):
    pass


class _RejectUnknownHost(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname)


class _OperationUnsupported(OSError):
    pass


class _SFTPClient(paramiko.SFTPClient):
    """paramiko's client, telling "operation unsupported" apart from other failures."""

    def _convert_status(self, msg):
        # paramiko reports SSH_FX_OP_UNSUPPORTED as a bare IOError; peek at the code first.
        position = msg.packet.tell()
        if msg.get_int() == SFTP_OP_UNSUPPORTED:
            raise _OperationUnsupported(msg.get_text())
        msg.packet.seek(position)
        return super()._convert_status(msg)


def _stored(name: str, attributes: paramiko.SFTPAttributes) -> StoredObject:
    modified = None
    if attributes.st_mtime is not None:
        modified = datetime.fromtimestamp(attributes.st_mtime, tz=timezone.utc)
    return StoredObject(name, attributes.st_size or 0, modified, None)
