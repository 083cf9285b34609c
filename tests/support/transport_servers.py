"""S3 and SFTP servers on 127.0.0.1 that the tests make misbehave, built on `loopback`'s (moto,
sshd, keys; shared with the benchmark).

Plain context managers, no pytest: fixtures in test modules wrap them.

- `queue_athena_results` and `RecordingAthena`: what moto's Athena "returns", and which queries
  it was asked.
- `s3_fault_proxy(endpoint)` yields a `FaultInjectingProxy` in front of moto that can answer
  chosen requests with an S3 error, corrupt their body on the way, or go away.
- `asyncssh_sftp_server(root, ...)` runs an asyncssh SFTP server chrooted to `root`, with
  `SftpFaults` to drop the connection mid-write, deny writes, refuse posix-rename, answer a
  write with an error, acknowledge a write without storing it, corrupt stored bytes, slow
  every write down, or understate a file's size once; `SftpFaults` also records what the
  server saw: every read (offset against the file's size), the order of opens, closes and
  removes, and how each connection ended.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import asyncssh

from loopback.s3 import POLL_INTERVAL, moto_api
from loopback.ssh import LOCALHOST


def queue_athena_results(endpoint: str, *results: tuple[list[str], list[list[str | None]]]):
    """What the next started Athena queries "return", in order: (header, rows) each.

    moto writes them at the query's output location as Athena's CSV, wrapping values in
    quotes without doubling the ones inside: that is done here.
    """

    def cell(value):
        return {} if value is None else {"VarCharValue": value.replace('"', '""')}

    payload = [
        {
            "rows": [{"Data": [cell(v) for v in row]} for row in [header, *rows]],
            "column_info": [{"Name": name, "Type": "varchar"} for name in header],
        }
        for header, rows in results
    ]
    moto_api(endpoint, "/moto-api/static/athena/query-results", {"results": payload})


class RecordingAthena:
    """An Athena client that remembers each query text it was asked to start."""

    def __init__(self, client):
        self._client = client
        self.queries: list[str] = []

    def start_query_execution(self, **request):
        self.queries.append(request["QueryString"])
        return self._client.start_query_execution(**request)

    def __getattr__(self, name):
        return getattr(self._client, name)


@dataclass
class InjectedFault:
    method: str
    query_contains: str
    remaining: int
    status: int | None  # None: forward the request with its body corrupted
    code: str = ""


class FaultInjectingProxy:
    """Forwards HTTP to `upstream`, except for requests matching a fault."""

    def __init__(self, upstream_url: str, url: str):
        self.upstream = urlsplit(upstream_url)
        self.url = url
        self.requests: list[tuple[str, str]] = []
        self._faults: list[InjectedFault] = []
        self._delays: list[tuple[str, str, float]] = []
        self._lock = threading.Lock()
        # set by go_away(): the endpoint is gone (open connections dropped, new ones refused)
        self.gone = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def go_away(self) -> None:
        """The endpoint disappears, as when S3 is lost mid-run: every connection still open is
        dropped at its next request, and the port refuses new ones."""
        self.gone.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.socket.close()

    def fail(
        self, method: str, *, status: int, code: str, times: int = 1, query_contains: str = ""
    ) -> None:
        """Answer the next `times` matching requests with an S3 error instead of forwarding."""
        with self._lock:
            self._faults.append(InjectedFault(method, query_contains, times, status, code))

    def corrupt(self, method: str, *, times: int = 1, query_contains: str = "") -> None:
        """Flip a byte in the body of the next `times` matching requests, then forward them."""
        with self._lock:
            self._faults.append(InjectedFault(method, query_contains, times, None))

    def delay(self, method: str, seconds: float, *, query_contains: str = "") -> None:
        """Hold every matching request `seconds` before forwarding it (a slow store)."""
        with self._lock:
            self._delays.append((method, query_contains, seconds))

    def delay_for(self, method: str, path: str) -> float:
        with self._lock:
            return sum(s for m, part, s in self._delays if m == method and part in path)

    def count(self, method: str, query_contains: str = "") -> int:
        return sum(1 for seen, path in self.requests if seen == method and query_contains in path)

    def take_fault(self, method: str, path: str) -> InjectedFault | None:
        with self._lock:
            self.requests.append((method, path))
            for fault in self._faults:
                if fault.remaining and fault.method == method and fault.query_contains in path:
                    fault.remaining -= 1
                    return fault
        return None


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultInjectingProxy  # set on a per-server subclass
    hop_by_hop = {"connection", "keep-alive", "transfer-encoding", "expect", "date", "server"}

    def setup(self) -> None:
        super().setup()
        # An answer is two writes, its headers then its body: with Nagle's algorithm on, the
        # body waits for the client's delayed ACK of the headers, 40 ms an answer on Linux
        # (a listing or a small read took 48 ms here against 5 ms from moto itself).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_request(self) -> None:
        if self.proxy.gone.is_set():
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.proxy.take_fault(self.command, self.path)
        time.sleep(self.proxy.delay_for(self.command, self.path))
        if fault is not None and fault.status is not None:
            self._send(fault.status, [("Content-Type", "application/xml")], _s3_error(fault.code))
            return
        if fault is not None and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        upstream = http.client.HTTPConnection(
            self.proxy.upstream.hostname, self.proxy.upstream.port, timeout=60
        )
        try:
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in self.hop_by_hop
            }
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            kept = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in self.hop_by_hop
            ]
            self._send(response.status, kept, payload)
        finally:
            upstream.close()

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            # A HEAD answer states the object's size but carries no body.
            lengths = [value for name, value in headers if name.lower() == "content-length"]
            self.send_header("Content-Length", lengths[0] if lengths else "0")
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_request

    def log_message(self, format, *args):  # noqa: A002 - quiet in test output
        return None


def _s3_error(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
    ).encode()


@contextmanager
def s3_fault_proxy(upstream_url: str) -> Iterator[FaultInjectingProxy]:
    handler = type("Handler", (_ProxyHandler,), {})
    server = ThreadingHTTPServer((LOCALHOST, 0), handler)
    server.daemon_threads = True
    proxy = FaultInjectingProxy(upstream_url, f"http://{LOCALHOST}:{server.server_address[1]}")
    proxy._server = server
    handler.proxy = proxy
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
    )
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- SFTP with asyncssh -------------------------------------------------------------------------


class ReadRequest(NamedTuple):
    path: str
    offset: int
    length: int
    file_size: int  # the file's size on disk when the request arrived


@dataclass
class SftpFaults:
    """Misbehaviour for `asyncssh_sftp_server` (change it while the server runs), and what
    the server saw."""

    # Drop the whole connection once, after this many bytes have been written to files.
    drop_after_bytes: int | None = None
    deny_writes: bool = False
    # False: answer posix-rename@openssh.com with "operation unsupported", like a server
    # without the extension.
    posix_rename: bool = True
    drops: int = 0
    bytes_written: int = field(default=0, repr=False)
    # Faults on the write request that covers byte `fault_offset` of a file; each counter is
    # how many more such writes get it (a large number: every upload).
    fault_offset: int = 65536
    # Answer the write with this error instead of storing it.
    refuse_writes: int = 0
    refusal: type[asyncssh.SFTPError] = asyncssh.SFTPFailure
    # Answer "ok" without storing the data (a lying server, a lost write).
    swallow_writes: int = 0
    # Store the data, then flip its first byte on disk (the medium corrupts it).
    corrupt_writes: int = 0
    # Seconds to sleep in every write (to catch an upload in the act).
    write_delay: float = 0.0
    # Bytes taken off the size in the next answer to a stat of an open file (fstat), once.
    understate_fstat: int = 0
    # Files opened for writing, by path relative to the root, in order.
    opened_for_write: list[str] = field(default_factory=list)
    # Called with the new name after each file is renamed into place (a test's trigger).
    after_rename: Callable[[str], None] | None = None
    # A barrier: while `hold_writes` is set, every write waits until it is cleared (and says
    # so in `writes_held`); the server stalls like one whose disk hangs.
    hold_writes: threading.Event = field(default_factory=threading.Event)
    writes_held: threading.Event = field(default_factory=threading.Event)
    # What the server saw, in order: every read request...
    reads: list[ReadRequest] = field(default_factory=list)
    # ...("open" | "close" | "remove", path relative to the root) for files...
    file_events: list[tuple[str, str]] = field(default_factory=list)
    # ...and how each connection ended: None for an orderly SSH disconnect, else the exception
    # asyncssh got (ConnectionLost for a bare TCP close, ConnectionResetError, ...).
    connection_ends: list[Exception | None] = field(default_factory=list)


class SftpServerAddress(NamedTuple):
    host: str
    port: int
    host_public_key: str


class FaultInjectingSFTPServer(asyncssh.SFTPServer):
    def __init__(self, chan, *, chroot: Path, faults: SftpFaults):
        super().__init__(chan, chroot=os.fsencode(chroot))
        self._faults = faults
        self._paths: dict[int, str] = {}  # id(open file) -> its path relative to the root

    def open(self, path, pflags, attrs):
        relative = os.fsdecode(path).lstrip("/")
        if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT):
            if self._faults.deny_writes:
                raise asyncssh.SFTPPermissionDenied("writes are denied on this server")
            self._faults.opened_for_write.append(relative)
        file_obj = super().open(path, pflags, attrs)
        self._paths[id(file_obj)] = relative
        self._faults.file_events.append(("open", relative))
        return file_obj

    def close(self, file_obj):
        # asyncssh calls this for a client's close request and, at the end of the session,
        # for every handle the client left open.
        self._faults.file_events.append(("close", self._paths.pop(id(file_obj), "?")))
        return super().close(file_obj)

    def remove(self, path):
        self._faults.file_events.append(("remove", os.fsdecode(path).lstrip("/")))
        return super().remove(path)

    def read(self, file_obj, offset, size):
        path = self._paths.get(id(file_obj), "?")
        file_size = os.fstat(file_obj.fileno()).st_size
        self._faults.reads.append(ReadRequest(path, offset, size, file_size))
        return super().read(file_obj, offset, size)

    def fstat(self, file_obj):
        result = super().fstat(file_obj)
        if not self._faults.understate_fstat:
            return result
        attributes = asyncssh.SFTPAttrs.from_local(result)
        attributes.size = max(0, result.st_size - self._faults.understate_fstat)
        self._faults.understate_fstat = 0
        return attributes

    def write(self, file_obj, offset, data):
        faults = self._faults
        if faults.hold_writes.is_set():
            faults.writes_held.set()
            deadline = time.monotonic() + 120
            while faults.hold_writes.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
        if faults.write_delay:
            time.sleep(faults.write_delay)
        if offset <= faults.fault_offset < offset + len(data):
            if faults.refuse_writes:
                faults.refuse_writes -= 1
                raise faults.refusal("injected: no space left on device")
            if faults.swallow_writes:
                faults.swallow_writes -= 1
                return None
            if faults.corrupt_writes:
                faults.corrupt_writes -= 1
                result = super().write(file_obj, offset, data)
                file_obj.seek(offset)
                file_obj.write(bytes([data[0] ^ 0xFF]))
                return result
        result = super().write(file_obj, offset, data)
        if faults.drop_after_bytes is not None:
            faults.bytes_written += len(data)
            if faults.bytes_written >= faults.drop_after_bytes:
                faults.drop_after_bytes = None
                faults.drops += 1
                self.channel.get_connection().abort()
        return result

    def posix_rename(self, oldpath, newpath):
        if not self._faults.posix_rename:
            raise asyncssh.SFTPOpUnsupported("posix-rename@openssh.com not supported")
        result = super().posix_rename(oldpath, newpath)
        if self._faults.after_rename is not None:
            self._faults.after_rename(os.fsdecode(newpath))
        return result


class _PasswordServer(asyncssh.SSHServer):
    def __init__(self, password: str | None, faults: SftpFaults):
        self._password = password
        self._faults = faults

    def connection_lost(self, exc: Exception | None) -> None:
        self._faults.connection_ends.append(exc)

    def password_auth_supported(self) -> bool:
        return self._password is not None

    def validate_password(self, username: str, password: str) -> bool:
        return password == self._password


@contextmanager
def asyncssh_sftp_server(
    root: Path,
    *,
    authorized_client_key: str,
    host_key: Path,
    faults: SftpFaults | None = None,
    password: str | None = None,
    encryption_algs: tuple[str, ...] | None = None,
) -> Iterator[SftpServerAddress]:
    """An SFTP server chrooted to `root`, accepting `authorized_client_key` (and `password`),
    offering only `encryption_algs` when given (asyncssh's own list otherwise)."""
    faults = faults if faults is not None else SftpFaults()
    root.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():
        return await asyncssh.listen(
            LOCALHOST,
            0,
            server_host_keys=[str(host_key)],
            authorized_client_keys=asyncssh.import_authorized_keys(authorized_client_key + "\n"),
            server_factory=lambda: _PasswordServer(password, faults),
            sftp_factory=lambda chan: FaultInjectingSFTPServer(chan, chroot=root, faults=faults),
            allow_scp=False,
            **({"encryption_algs": list(encryption_algs)} if encryption_algs else {}),
        )

    async def stop(server):
        server.close()
        await server.wait_closed()

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    port = server.sockets[0].getsockname()[1]
    host_public_key = asyncssh.read_private_key(str(host_key)).export_public_key().decode()
    try:
        yield SftpServerAddress(LOCALHOST, port, " ".join(host_public_key.split()[:2]))
    finally:
        asyncio.run_coroutine_threadsafe(stop(server), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
