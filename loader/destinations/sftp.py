"""`sftp://user@host[:port]/remote/dir`: files in a directory on an SFTP server (paramiko).

Credentials never come from the URL (a password there is refused): `MIPS_SFTP_KEY_FILE` (with
`MIPS_SFTP_KEY_PASSPHRASE` if the key is encrypted), or `MIPS_SFTP_PASSWORD` /
`MIPS_SFTP_PASSWORD_FILE`. Host keys are checked against `MIPS_SFTP_KNOWN_HOSTS` (default
~/.ssh/known_hosts) and nothing else; an unknown host or a changed key is refused.

An upload, and why a corrupt file can never count as delivered:

- The local file is streamed to `.{name}.mipspart-HOST-PID-START-RANDOM.part` (created with
  O_EXCL and `settings.file_mode`) in 32 KiB SFTP writes, up to 64 in flight. Unlike
  paramiko's `putfo`, which ignores the replies of pipelined writes (and whose `close()`
  swallows errors), every write's status reply is collected by request id and checked, and so
  is the reply to the close.
- The `.part` file is then read back (pipelined 32 KiB reads, streamed into SHA-256) and its
  size and hash compared with the caller's. The reads stop at the size the open file reports
  (fstat), so none asks for bytes past its end (`_SFTPClient.digest_file` says how a file
  that grows meanwhile is still read whole). OpenSSH offers no server-side hash, so this
  read-back is the proof; a refused write or a mismatch raises VerificationMismatch, which
  `upload_verified` answers with a fresh upload, `verify_attempts` times in all, then a
  terminal error naming the file, the expected and the stored digest.
- Only then is it renamed over the final name with `posix-rename@openssh.com`, which replaces
  atomically. A server that answers "operation unsupported" gets remove-then-rename instead:
  a moment where the name is absent, never a partial file under it.

A failed or interrupted upload (SIGTERM unwinds as KeyboardInterrupt) closes its handle on the
`.part` file, then removes the file, so the server never sees it removed while open. If the
connection is gone, or the interruption cut a request or a reply in half (the session has
lost its framing: `_SFTPClient.stream_cut`, nothing more is sent on it), the `.part` is
removed after the reconnect, or as a stale file by the next run. The write loop waits for
replies, not for room in the channel window, so an interruption mostly lands between
packets.

On every connect, stale `.part` files of ours (temporary_names.is_stale_temporary: this host
and the writer's pid is gone, or older than STALE_PART_AGE_SECONDS) are removed from the root,
and from each subdirectory the first time an upload goes there on that connection; files whose
names do not carry our marker are never touched.

`close()` ends the session in order (see _end_session): the SFTP channel is closed, then an
SSH_MSG_DISCONNECT sent, and the socket closed once the server has hung up, so the server logs
a disconnect, not "connection reset by peer". After a transient failure the connection is just
dropped (the server may be gone).
"""

from __future__ import annotations

import errno
import hashlib
import io
import posixpath
import socket
import stat as stat_mode
import struct
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import paramiko
from paramiko.common import cMSG_DISCONNECT
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_FSETSTAT,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_INIT,
    CMD_OPEN,
    CMD_READ,
    CMD_STATUS,
    CMD_VERSION,
    CMD_WRITE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
    SFTP_FLAG_WRITE,
    SFTP_OP_UNSUPPORTED,
    SFTPError,
    int64,
)

from loader.destinations.base import (
    ConfigurationError,
    DeliveryError,
    Destination,
    Digest,
    HashingReader,
    StoredObject,
    TerminalDeliveryError,
    TransientDeliveryError,
    UnreachableError,
    VerificationMismatch,
    check_name,
    upload_verified,
)
from loader.destinations.settings import TransportSettings
from loader.destinations.temporary_names import is_stale_temporary, temporary_name
from loader.destinations.urls import redact_url, refuse_credentials_in_url

DEFAULT_PORT = 22
# Bytes per SFTP read or write request (servers may refuse more) and requests kept in flight.
REQUEST_SIZE = 32 * 1024
MAX_IN_FLIGHT = 64
# Bytes per write request: a write, its header and the longest handle (256 bytes) fit in one
# SSH packet of OpenSSH's 32 KiB channel packets (paramiko sends at most the server's maximum
# packet size less 64 bytes per packet). A 32 KiB write went out as a full packet and a
# ~90-byte one: twice the packets, each with its own encryption, MAC and locking in Python.
WRITE_SIZE = REQUEST_SIZE - 512
# Bytes per read request of the read-back when the server states its limits
# (`limits@openssh.com`) and they allow it; a server that does not keeps REQUEST_SIZE, which
# every server serves whole. Twice the bytes per reply: half the replies and packets to take
# in, which is where the read-back spends its time.
LARGE_READ_SIZE = 64 * 1024
LIMITS_EXTENSION = "limits@openssh.com"
# Largest SSH packet the server may send us on the SFTP channel (paramiko's default is
# 32 KiB): room for a LARGE_READ_SIZE reply in one packet.
SFTP_MAX_PACKET_SIZE = 2 * LARGE_READ_SIZE
# Bytes of an SFTP data reply besides the data: length, type, id, the data's length.
DATA_REPLY_OVERHEAD = 4 + 1 + 4 + 4
# SSH channel window: room for the replies of every request in flight, and more.
SFTP_WINDOW_SIZE = 16 * 1024 * 1024
# Bytes of an SFTP write request besides its handle and data: length, type, id, the handle's
# and the data's lengths, offset.
WRITE_PACKET_OVERHEAD = 4 + 1 + 4 + 4 + 8 + 4
# Ciphers offered first: AES-GCM encrypts and authenticates each packet in one pass, where
# paramiko's first choice (aes128-ctr with hmac-sha2-256) takes a cipher and a MAC, each
# called from Python per packet. The SFTP leg is about 20% faster with it (bench.sftp_verify,
# docs/benchmarks.md); a server without it negotiates the rest of paramiko's list, as before.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
PROBE_NAME = ".mips-preflight"
# SSH_MSG_DISCONNECT reason code "disconnected by application" (RFC 4253, 11.1).
DISCONNECT_BY_APPLICATION = 11
# How long an orderly close waits for the server to hang up after our disconnect.
CLOSE_TIMEOUT_SECONDS = 5.0
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
        refuse_credentials_in_url(url, "sftp")
        parts = urlsplit(url)
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
        # Directories cleared of stale temporary files on the current connection.
        self._swept: set[str] = set()

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{self.username}@{host}:{self.port}{self.directory}"

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
        expected = Digest(size, sha256.lower())
        return self._upload(
            name, expected, lambda: open(local_path, "rb"), local_path, before_rename
        )

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

    def read_digest(self, name: str) -> Digest | None:
        remote = self._remote_path(name)
        with self._mapped_errors(name):
            try:
                return self._connection().digest_file(remote)
            except FileNotFoundError:
                return None

    def preflight(self) -> None:
        """Connect (host key, credentials), then create and remove a probe file in the root."""
        with self._preflight_errors(), self._mapped_errors(None):
            sftp = self._connection()
            try:
                attributes = sftp.stat(self.directory)
            except FileNotFoundError:
                raise self._error(
                    ConfigurationError, f"directory {self.directory} does not exist on the server"
                ) from None
            if not stat_mode.S_ISDIR(attributes.st_mode or 0):
                raise self._error(
                    ConfigurationError, f"{self.directory} on the server is not a directory"
                )
            probe = posixpath.join(self.directory, temporary_name(PROBE_NAME))
            try:
                handle = sftp.create_exclusive(probe, self.settings.file_mode)
                sftp.close_handle(handle)
            except PermissionError:
                raise self._error(
                    ConfigurationError,
                    f"directory {self.directory} is not writable for {self.username}",
                ) from None
            sftp.remove(probe)

    def close(self) -> None:
        self._disconnect(orderly=True)

    # Uploading.

    def _upload(
        self,
        name: str,
        expected: Digest,
        open_source: Callable[[], BinaryIO],
        source_label: Path,
        before_rename: Callable[[], object] | None = None,
    ) -> StoredObject:
        remote = self._remote_path(name)
        mode = self.settings.file_mode

        def upload_once() -> StoredObject:
            try:
                source = open_source()
            except OSError as error:
                raise self._error(
                    TerminalDeliveryError, f"cannot read {source_label}: {error.strerror}", name
                ) from None
            with source, self._mapped_errors(name):
                sftp = self._connection()
                directory = posixpath.dirname(remote)
                self._make_parents(sftp, directory)
                self._sweep(sftp, directory)
                temporary = posixpath.join(self.directory, temporary_name(name))
                try:
                    reader = HashingReader(source)
                    refused = sftp.write_new_file(temporary, mode, reader.read)
                    if refused is None:
                        self._check_source(source_label, name, expected, reader.digest())
                    elif isinstance(refused[1], OSError) and refused[1].errno in TERMINAL_ERRNOS:
                        raise refused[1]
                    # The bytes the server holds, read back: the only proof SFTP allows.
                    stored = sftp.digest_file(temporary)
                    if refused is not None or stored != expected:
                        cause = None
                        if refused is not None:
                            cause = f"the server refused the write at offset {refused[0]}: "
                            cause += _describe(refused[1])
                        raise VerificationMismatch(expected=expected, stored=stored, cause=cause)
                    if before_rename is not None:
                        before_rename()
                    self._rename_into_place(sftp, temporary, remote)
                except BaseException:
                    self._discard(temporary)
                    raise
                stored_object = _stored(name, sftp.stat(remote))
                return StoredObject(
                    name, stored_object.size, stored_object.modified, expected.sha256
                )

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
            if self._sftp is not None and not self._sftp.stream_cut:
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

    def _sweep(self, sftp: _SFTPClient, directory: str) -> None:
        """Remove stale temporary files of ours from `directory`, once per connection."""
        if directory in self._swept:
            return
        self._swept.add(directory)
        try:
            entries = sftp.listdir_attr(directory)
        except OSError:
            return  # a directory we cannot list: the upload itself will say why
        for entry in entries:
            if stat_mode.S_ISREG(entry.st_mode or 0) and is_stale_temporary(
                entry.filename, entry.st_mtime
            ):
                with suppress(OSError):
                    sftp.remove(posixpath.join(directory, entry.filename))

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
        if self._sftp is not None and self._sftp.stream_cut:
            self._disconnect()  # a request or reply was cut short: the session cannot go on
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
                transport_factory=_transport,
                **credentials,
            )
        except TimeoutError as error:  # socket.timeout: nothing answered
            client.close()
            raise _ConnectTimedOut(f"no answer within {self.settings.connect_timeout} s") from error
        except BaseException:
            client.close()
            raise
        try:
            transport = client.get_transport()
            assert transport is not None
            transport.set_keepalive(self.settings.keepalive_interval)
            sftp = _SFTPClient.from_transport(
                transport, window_size=SFTP_WINDOW_SIZE, max_packet_size=SFTP_MAX_PACKET_SIZE
            )
            assert sftp is not None
            sftp.get_channel().settimeout(self.settings.io_timeout)
        except BaseException:
            client.close()
            raise
        self._ssh, self._sftp = client, sftp
        self._swept = set()
        self._remove_orphans(sftp)
        self._sweep(sftp, self.directory)

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
                if isinstance(error, OSError):
                    why = error.strerror or type(error).__name__
                elif settings.sftp_key_passphrase:
                    # cryptography says only "ValueError" for a wrong passphrase.
                    why = "wrong passphrase (MIPS_SFTP_KEY_PASSPHRASE) or not a private key"
                else:
                    why = "not a private key paramiko can read"
                raise self._error(
                    ConfigurationError,
                    f"cannot load key {settings.sftp_key_file} (MIPS_SFTP_KEY_FILE): {why}",
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

    def _disconnect(self, *, orderly: bool = False) -> None:
        """Drop the connection; `orderly` (the end of a session, not a failure): end it the
        way the server expects, see _end_session."""
        sftp, ssh = self._sftp, self._ssh
        self._sftp = self._ssh = None
        if ssh is None:
            return
        try:
            if orderly and sftp is not None and not sftp.stream_cut:
                with suppress(Exception):
                    _end_session(sftp, ssh.get_transport())
        finally:
            with suppress(Exception):
                ssh.close()

    @contextmanager
    def _preflight_errors(self):
        """In preflight a refusal means the configuration is wrong: ConfigurationError."""
        try:
            yield
        except ConfigurationError:
            raise
        except TerminalDeliveryError as error:
            raise self._error(ConfigurationError, error.reason) from None

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
                ConfigurationError, f"host key for {address} not in {known_hosts}", name
            )
        if isinstance(error, paramiko.BadHostKeyException):
            return self._error(
                ConfigurationError,
                f"host key for {address} changed: server offered "
                f"{error.key.fingerprint}, {known_hosts} has {error.expected_key.fingerprint}; "
                "confirm with the server's owner before updating known_hosts",
                name,
            )
        if isinstance(error, paramiko.AuthenticationException):
            return self._error(
                ConfigurationError,
                f"authentication failed for {self.username} at {address}: {error}",
                name,
            )
        if isinstance(error, OSError) and error.errno in TERMINAL_ERRNOS:
            reason = error.strerror or errno.errorcode.get(error.errno, str(error.errno))
            return self._error(TerminalDeliveryError, f"SFTP server refused: {reason}", name)
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if isinstance(error, _UNREACHABLE):
            return self._error(UnreachableError, f"SFTP server unreachable ({detail})", name)
        return self._error(TransientDeliveryError, f"SFTP connection failed ({detail})", name)


def _end_session(sftp: _SFTPClient, transport: paramiko.Transport | None) -> None:
    """Close the SFTP channel, say goodbye with SSH_MSG_DISCONNECT and let the server hang up.

    paramiko's close() sends no SSH_MSG_DISCONNECT: it closes the socket at once, and the
    replies still on their way to it (the server's channel close, at least) make our kernel
    answer with a TCP reset, which servers log as "connection reset by peer". Here the
    channel is closed first (the server ends the SFTP session and closes its files), then
    the disconnect (by application) tells the server we are done; it closes the connection,
    and paramiko's reader takes in everything it sent until then, so the socket closes with
    nothing unread: a FIN, no reset. A server that does not hang up within
    CLOSE_TIMEOUT_SECONDS is left to the caller's close of the socket.
    """
    if transport is None or not transport.is_active():
        return
    sftp.close()
    goodbye = paramiko.Message()
    goodbye.add_byte(cMSG_DISCONNECT)
    goodbye.add_int(DISCONNECT_BY_APPLICATION)
    goodbye.add_string("session closed by mips-loader")
    goodbye.add_string("")  # language tag
    transport._send_user_message(goodbye)
    transport.join(CLOSE_TIMEOUT_SECONDS)


# Connection failures that say the server could not be reached at all (every address refused
# or timed out, the name not resolved), as opposed to a session that broke off.
class _ConnectTimedOut(OSError):
    """The TCP connection (or the SSH banner) did not come within the connect timeout."""


_UNREACHABLE = (
    paramiko.ssh_exception.NoValidConnectionsError,
    socket.gaierror,
    ConnectionRefusedError,
    _ConnectTimedOut,
)


class _UnknownHostKey(paramiko.SSHException):
    pass


def _transport(sock, **options) -> paramiko.Transport:
    """paramiko's transport with PREFERRED_CIPHERS (those this paramiko knows) offered first,
    on a TCP socket that sends each SSH packet at once (TCP_NODELAY)."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, **options)
    security = transport.get_security_options()
    first = tuple(name for name in PREFERRED_CIPHERS if name in security.ciphers)
    security.ciphers = first + tuple(name for name in security.ciphers if name not in first)
    return transport


class _RejectUnknownHost(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname)


class _OperationUnsupported(OSError):
    pass


class _SFTPClient(paramiko.SFTPClient):
    """paramiko's client, plus pipelined writes and reads whose every reply is checked."""

    # True once a request went out, or a reply came in, only in part (an interruption, a
    # timeout, a dropped connection): the SFTP stream has lost its framing, so nothing more
    # may be sent on this session (the server would read it as the rest of the cut packet).
    stream_cut = False
    # What the server announced at the handshake, and the read size chosen from it.
    server_extensions: dict[str, bytes] = {}  # noqa: RUF012 - replaced per session
    _read_request_size: int | None = None

    def _send_packet(self, t, packet):
        try:
            super()._send_packet(t, packet)
        except BaseException:
            self.stream_cut = True  # how much of it went out is unknown
            raise

    def _read_packet(self):
        # Giving up while waiting for a reply loses nothing; giving up in the middle of one
        # leaves the rest of it to be taken for the next reply.
        received = b""
        try:
            received = self.sock.recv(4)
            if not received:
                raise EOFError()
            if len(received) < 4:
                received += self._read_all(4 - len(received))
            if received[0]:
                raise SFTPError("Garbage packet received")  # > 16 MB: not a length
            size = struct.unpack(">I", received)[0]
            data = self._read_all(size)
        except BaseException:
            if received:
                self.stream_cut = True
            raise
        return (data[0], data[1:]) if data else (0, b"")

    def _convert_status(self, msg):
        # paramiko reports SSH_FX_OP_UNSUPPORTED as a bare IOError; peek at the code first.
        position = msg.packet.tell()
        if msg.get_int() == SFTP_OP_UNSUPPORTED:
            raise _OperationUnsupported(msg.get_text())
        msg.packet.seek(position)
        return super()._convert_status(msg)

    def create_exclusive(self, path: str, mode: int) -> bytes:
        """Create `path` (it must not exist) for writing with `mode`; returns the handle."""
        attributes = paramiko.SFTPAttributes()
        attributes.st_mode = mode
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
        kind, msg = self._request(CMD_OPEN, self._adjust_cwd(path), flags, attributes)
        if kind != CMD_HANDLE:
            raise SFTPError("expected a handle")
        handle = msg.get_binary()
        try:
            # The mode given at open is narrowed by the server's umask; set it exactly.
            with suppress(_OperationUnsupported):
                self._request(CMD_FSETSTAT, handle, attributes)
        except BaseException:
            self.close_quietly(handle)
            raise
        return handle

    def close_handle(self, handle: bytes) -> None:
        """Close a handle and check the reply (paramiko's SFTPFile.close swallows it)."""
        self._request(CMD_CLOSE, handle)

    def close_quietly(self, handle: bytes) -> None:
        """Close a handle while another exception is on its way (an interruption, a failed
        request), so that a file we go on to remove is not open on the server; best effort:
        what goes wrong here is not raised over the exception that brought us here."""
        if self.stream_cut:
            return
        with suppress(Exception):
            self.close_handle(handle)

    def write_new_file(
        self, path: str, mode: int, read_chunk: Callable[[int], bytes]
    ) -> tuple[int, Exception] | None:
        """Create `path` and write what `read_chunk(size)` yields, pipelined, checking every
        reply.

        Returns None when every write and the close succeeded, else (offset, error) of the
        first refused write; after a refusal nothing more is sent. Connection errors raise.
        """
        handle = self.create_exclusive(path, mode)
        size = self._write_size(handle)
        replies = _Replies(self)
        offset = 0
        try:
            while True:
                chunk = read_chunk(size)
                if not chunk:
                    break
                # While the channel window has no room for this write, wait for a reply rather
                # than in the send: a signal then lands between two packets, not inside one.
                room_needed = len(chunk) + len(handle) + WRITE_PACKET_OVERHEAD
                while replies.waiting() and (
                    replies.waiting() >= MAX_IN_FLIGHT
                    or self.sock.recv_ready()
                    or self.sock.out_window_size < room_needed
                ):
                    self._read_response()
                if replies.first_error is not None:
                    break
                number = self._async_request(replies, CMD_WRITE, handle, int64(offset), chunk)
                replies.expect(number, offset)
                offset += len(chunk)
            while replies.waiting():
                self._read_response()
        except BaseException:
            # Interrupted (SIGTERM unwinds as KeyboardInterrupt) or failed: the caller removes
            # the file next, which must not happen under a handle still open on the server.
            self.close_quietly(handle)
            raise
        try:
            self.close_handle(handle)
        except OSError as error:
            if replies.first_error is None:
                return offset, error
        return replies.first_error

    def _write_size(self, handle: bytes) -> int:
        """WRITE_SIZE, or less when the server's packets are smaller than OpenSSH's, so that
        each write goes out in one SSH packet."""
        room = self.sock.out_max_packet_size - 64 - WRITE_PACKET_OVERHEAD - len(handle)
        return max(min(WRITE_SIZE, room), 1024)

    def _read_size(self) -> int:
        """Bytes per read request: LARGE_READ_SIZE when the server says it serves reads that
        large (OpenSSH's `limits@openssh.com`: its max-read-length, 0 for no limit), else
        REQUEST_SIZE; no larger than one packet of ours holds. Asked once per session."""
        if self._read_request_size is None:
            size = REQUEST_SIZE
            limit = self._server_read_limit()
            if limit is not None and (limit == 0 or limit >= LARGE_READ_SIZE):
                room = self.sock.in_max_packet_size - DATA_REPLY_OVERHEAD
                size = max(min(LARGE_READ_SIZE, room), REQUEST_SIZE)
            self._read_request_size = size
        return self._read_request_size

    def _server_read_limit(self) -> int | None:
        """The server's max-read-length (`limits@openssh.com`), None when it states none."""
        if LIMITS_EXTENSION not in self.server_extensions:
            return None
        try:
            kind, msg = self._request(CMD_EXTENDED, LIMITS_EXTENSION)
        except (OSError, SFTPError):  # refused or not understood after all: no stated limit
            return None
        if kind != CMD_EXTENDED_REPLY:
            return None
        msg.get_int64()  # max-packet-length
        return msg.get_int64()  # max-read-length

    def _send_version(self):
        """paramiko's handshake, keeping the extensions the server announces (name: data)."""
        hello = paramiko.Message()
        hello.add_int(3)  # SFTP version 3, as paramiko asks
        self._send_packet(CMD_INIT, hello)
        kind, data = self._read_packet()
        if kind != CMD_VERSION:
            raise SFTPError("Incompatible sftp protocol")
        announced = paramiko.Message(data)
        version = announced.get_int()
        extensions: dict[str, bytes] = {}
        with suppress(Exception):  # a malformed list: the extensions read before it
            while announced.get_remainder():
                name = announced.get_text()
                extensions[name] = announced.get_binary()
        self.server_extensions = extensions
        return version

    def digest_file(self, path: str) -> Digest:
        """Size and SHA-256 of a remote file, read with pipelined requests, never all at once.

        No read is sent at or past the end of the file as far as its size is known, so the
        server never answers one with end-of-file (ProFTPD logs each such request): the open
        file's size is taken first (fstat), and only the bytes before it are requested, the
        last request no longer than what is left (a 48 KB file: two reads, an empty one:
        none). When they are in, a second fstat must give the same size. If the file grew in
        the meantime, or the server gives no size, it is read on one request at a time until
        the server answers end-of-file, so a longer file is hashed whole and seen as a
        mismatch: that one read at the end happens only for a file that changed while we
        read it (or a server that does not say how large it is). Zero reads past the end,
        then, for a file that holds still.
        """
        kind, msg = self._request(CMD_OPEN, self._adjust_cwd(path), SFTP_FLAG_READ, _NO_ATTRS)
        if kind != CMD_HANDLE:
            raise SFTPError("expected a handle")
        handle = msg.get_binary()
        digest = hashlib.sha256()
        try:
            limit = self._size_of(handle)
            size = 0 if limit is None else self._read_ahead(handle, limit, digest)
            while True:
                if limit is not None and size >= limit:
                    now = self._size_of(handle)
                    if now is not None and now <= size:
                        break  # all of it: nothing asked past its end
                    limit = None  # it grew (or has no size now): read on to end-of-file
                read_size = self._read_size()
                length = read_size if limit is None else min(read_size, limit - size)
                try:
                    kind, msg = self._request(CMD_READ, handle, int64(size), length)
                except EOFError:
                    break
                if kind != CMD_DATA:
                    raise SFTPError("expected data")
                data = msg.get_string()
                digest.update(data)
                size += len(data)
        finally:
            self.close_quietly(handle)
        return Digest(size, digest.hexdigest())

    def _size_of(self, handle: bytes) -> int | None:
        kind, msg = self._request(CMD_FSTAT, handle)
        if kind != CMD_ATTRS:
            raise SFTPError("expected attributes")
        return paramiko.SFTPAttributes._from_msg(msg).st_size

    def _read_ahead(self, handle: bytes, limit: int, digest) -> int:
        """Read the bytes before `limit` into `digest`, up to MAX_IN_FLIGHT requests in
        flight; returns how many came back in order before a short read or end-of-file (a
        file that shrank), after which the caller goes on one request at a time."""
        replies = _Replies(self, check_writes=False)
        requested: deque[tuple[int, int]] = deque()  # (request number, length), by offset
        next_offset = size = 0
        read_size = self._read_size()
        while size < limit:
            while len(requested) < MAX_IN_FLIGHT and next_offset < limit:
                length = min(read_size, limit - next_offset)
                number = self._async_request(replies, CMD_READ, handle, int64(next_offset), length)
                replies.expect(number, next_offset)
                requested.append((number, length))
                next_offset += length
            number, length = requested.popleft()
            try:
                data = replies.data_for(number)
            except EOFError:
                break
            digest.update(data)
            size += len(data)
            if len(data) < length:
                break
        for number, _ in requested:
            with suppress(EOFError, OSError):
                replies.data_for(number)  # drain the replies read ahead
        return size


_NO_ATTRS = paramiko.SFTPAttributes()


class _Replies:
    """Collects the replies to our pipelined requests by request number (paramiko calls
    `_async_response` for each), so that none is dropped unread.

    With `check_writes`, each status reply is checked as it arrives and the refused write with
    the lowest offset is kept in `first_error`; otherwise replies wait for `data_for`.
    """

    def __init__(self, client: _SFTPClient, *, check_writes: bool = True):
        self._client = client
        self._check_writes = check_writes
        self._offsets: dict[int, int] = {}
        self._arrived: dict[int, tuple[int, paramiko.Message]] = {}
        self.first_error: tuple[int, Exception] | None = None

    def expect(self, number: int, offset: int) -> None:
        self._offsets[number] = offset

    def waiting(self) -> int:
        return len(self._offsets)

    def _async_response(self, kind: int, msg: paramiko.Message, number: int) -> None:
        offset = self._offsets.pop(number, -1)
        if not self._check_writes:
            self._arrived[number] = (kind, msg)
            return
        if kind != CMD_STATUS:
            error: Exception = SFTPError(f"unexpected SFTP reply type {kind} to a write")
        else:
            try:
                self._client._convert_status(msg)
                return
            except Exception as refused:  # noqa: BLE001 - kept and reported by the caller
                error = refused
        if self.first_error is None or offset < self.first_error[0]:
            self.first_error = (offset, error)

    def data_for(self, number: int) -> bytes:
        """The data read by request `number`, waiting for it; EOFError at the end of file."""
        while number not in self._arrived:
            self._client._read_response()
        kind, msg = self._arrived.pop(number)
        if kind == CMD_DATA:
            return msg.get_string()
        if kind == CMD_STATUS:
            self._client._convert_status(msg)  # raises EOFError at the end, IOError otherwise
        raise SFTPError(f"unexpected SFTP reply type {kind} to a read")


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _stored(name: str, attributes: paramiko.SFTPAttributes) -> StoredObject:
    modified = None
    if attributes.st_mtime is not None:
        modified = datetime.fromtimestamp(attributes.st_mtime, tz=timezone.utc)
    return StoredObject(name, attributes.st_size or 0, modified, None)
