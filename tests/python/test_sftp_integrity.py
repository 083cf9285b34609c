"""SFTP uploads against servers that misbehave: a corrupt file never counts as delivered, our
stale `.part` files (and only ours) are removed on the next connect, files get the configured
mode, preflight says what is wrong before anything is written, and the client is a polite
guest (no reads past the end of a file, an orderly disconnect, no handle left open when an
interrupted upload removes its `.part`).

Servers: the asyncssh server of transport_servers (made to refuse, swallow or corrupt one
write, or every one) and the system's OpenSSH sshd."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import asyncssh
import pytest

from loader.destinations import (
    ConfigurationError,
    Digest,
    TerminalDeliveryError,
    TransientDeliveryError,
    TransportSettings,
    UnreachableError,
    open_destination,
    retrying,
)
from loader.destinations.sftp import LARGE_READ_SIZE, MAX_IN_FLIGHT, REQUEST_SIZE, WRITE_SIZE
from loader.destinations.temporary_names import STALE_PART_AGE_SECONDS, host_tag, temporary_name
from loopback.ssh import (
    SshdUnavailable,
    free_port,
    make_ssh_key,
    openssh_sftp_server,
    write_known_hosts,
)
from tests.support.local_runs import files_under
from tests.support.transport_servers import SftpFaults, asyncssh_sftp_server

MiB = 1024 * 1024
NAME = "Quality_21742_MlUGF8grFd.csv"
REPO = Path(__file__).resolve().parents[2]
# Past the first two writes (WRITE_SIZE each) and well inside the file; fewer than 100 writes
# in all, so paramiko's putfo never reads a write reply before close (and drops the error
# replies).
SIZE = MiB + 123
FAULT_OFFSET = 2 * WRITE_SIZE


def dead_pid() -> int:
    child = subprocess.Popen(["true"])  # noqa: S607 - coreutils
    child.wait()
    return child.pid


@dataclass
class Source:
    path: Path
    data: bytes

    @property
    def digest(self) -> Digest:
        return Digest(len(self.data), hashlib.sha256(self.data).hexdigest())


def source_file(directory: Path, size: int = SIZE) -> Source:
    data = os.urandom(size)
    path = directory / "upload.csv"
    path.write_bytes(data)
    return Source(path, data)


def put(destination, source: Source, name: str = NAME):
    return destination.put_file(
        source.path, name, size=len(source.data), sha256=source.digest.sha256
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return {
        "host": make_ssh_key(directory / "host_key"),
        "client": make_ssh_key(directory / "client_key"),
    }


@dataclass
class Server:
    url: str
    root: Path
    faults: SftpFaults
    settings: TransportSettings
    host: str
    port: int
    known_hosts: Path

    def open(self, **overrides):
        return open_destination(self.url, settings=replace(self.settings, **overrides))


@contextmanager
def serving(directory: Path, keys, faults: SftpFaults | None = None, **options) -> Iterator[Server]:
    """An asyncssh SFTP server on `directory/sftp-root` (its known_hosts beside it), and the
    loader's settings for it; `options` go to asyncssh_sftp_server."""
    root, faults = directory / "sftp-root", faults or SftpFaults()
    with asyncssh_sftp_server(
        root,
        authorized_client_key=keys["client"].public_key,
        host_key=keys["host"].private_path,
        faults=faults,
        **options,
    ) as address:
        known_hosts = write_known_hosts(
            directory / "known_hosts", address.host, address.port, address.host_public_key
        )
        settings = TransportSettings(
            sftp_known_hosts=known_hosts,
            sftp_key_file=keys["client"].private_path,
            connect_timeout=5,
            io_timeout=10,
        )
        yield Server(
            f"sftp://registry@{address.host}:{address.port}/",
            root,
            faults,
            settings,
            address.host,
            address.port,
            known_hosts,
        )


@pytest.fixture
def server(tmp_path, keys):
    faults = SftpFaults(fault_offset=FAULT_OFFSET)
    with serving(tmp_path, keys, faults, password="correct horse") as running:
        yield running


class OpenSsh(NamedTuple):
    url: str
    root: Path
    settings: TransportSettings
    log_path: Path


@pytest.fixture
def openssh(tmp_path):
    try:
        with openssh_sftp_server(tmp_path / "registry") as sshd:
            known_hosts = write_known_hosts(
                tmp_path / "openssh_known_hosts", sshd.host, sshd.port, sshd.host_public_key
            )
            settings = TransportSettings(
                sftp_known_hosts=known_hosts, sftp_key_file=sshd.client_key_path, connect_timeout=5
            )
            url = f"sftp://{sshd.user}@{sshd.host}:{sshd.port}{tmp_path / 'registry'}"
            yield OpenSsh(url, tmp_path / "registry", settings, sshd.log_path)
    except SshdUnavailable as reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"OpenSSH test cannot run in CI: {reason}")
        pytest.skip(f"OpenSSH test skipped: {reason}")


def arm(faults: SftpFaults, kind: str, times: int) -> None:
    if kind == "refused":
        faults.refuse_writes = times
        faults.refusal = asyncssh.SFTPNoSpaceOnFilesystem
    elif kind == "refused-generic":
        faults.refuse_writes = times
        faults.refusal = asyncssh.SFTPFailure
    elif kind == "swallowed":
        faults.swallow_writes = times
    else:
        faults.corrupt_writes = times


FAULTS = ["refused", "refused-generic", "swallowed", "corrupted"]


# --- task 1: every write checked, the stored bytes read back and hashed --------------------------


@pytest.mark.parametrize("kind", FAULTS)
def test_one_bad_write_is_caught_and_the_file_uploaded_again(server, tmp_path, kind):
    source = source_file(tmp_path)
    arm(server.faults, kind, times=1)

    with server.open() as destination:
        stored = retrying(lambda: put(destination, source), sleep=lambda _: None)

    assert (server.root / NAME).read_bytes() == source.data
    assert stored.checksum == source.digest.sha256
    # The fault was hit once, and a second upload (a new .part file) delivered the file.
    assert (server.faults.refuse_writes, server.faults.swallow_writes) == (0, 0)
    assert server.faults.corrupt_writes == 0
    uploads = [path for path in server.faults.opened_for_write if path.endswith(".part")]
    assert len(uploads) == 2 and len(set(uploads)) == 2
    assert files_under(server.root) == [NAME]


@pytest.mark.parametrize("kind", FAULTS)
def test_a_bad_write_that_persists_fails_naming_the_file_and_both_hashes(server, tmp_path, kind):
    source = source_file(tmp_path)
    arm(server.faults, kind, times=1000)
    attempts = []

    def upload():
        attempts.append(1)
        return put(destination, source)

    with server.open() as destination, pytest.raises(TerminalDeliveryError) as raised:
        retrying(upload, sleep=lambda _: None)

    message = str(raised.value)
    assert "\n" not in message
    assert NAME in message and f"expected {source.digest}" in message
    assert "verification failed after 2 uploads" in message
    stored_sha256 = message.split("stored ")[1].split("sha256 ")[1][:64]
    assert len(stored_sha256) == 64 and stored_sha256 != source.digest.sha256
    if kind == "swallowed":
        # The lost write left a hole of NUL bytes: the right size, the wrong bytes.
        hole = bytearray(source.data)
        hole[FAULT_OFFSET : FAULT_OFFSET + WRITE_SIZE] = bytes(WRITE_SIZE)
        assert f"stored {Digest.of_bytes(bytes(hole))}" in message
    elif kind == "corrupted":
        flipped = bytearray(source.data)
        flipped[FAULT_OFFSET] ^= 0xFF
        assert f"stored {Digest.of_bytes(bytes(flipped))}" in message
    else:
        assert f"refused the write at offset {FAULT_OFFSET}" in message
    assert len(attempts) == 1  # terminal: `retrying` does not start over
    assert len([p for p in server.faults.opened_for_write if p.endswith(".part")]) == 2
    assert files_under(server.root) == []  # no final file, no .part left


def test_read_digest_streams_what_the_server_holds(server, tmp_path):
    source = source_file(tmp_path, 3 * MiB + 5)
    with server.open() as destination:
        put(destination, source)
        assert destination.read_digest(NAME) == source.digest
        (server.root / NAME).write_bytes(b"changed behind our back")
        assert destination.read_digest(NAME) == Digest.of_bytes(b"changed behind our back")
        (server.root / "empty.csv").write_bytes(b"")
        assert destination.read_digest("empty.csv") == Digest.of_bytes(b"")
        assert destination.read_digest("absent.csv") is None


def test_openssh_upload_is_read_back_and_verified(openssh, tmp_path):
    url, root, settings, _ = openssh
    source = source_file(tmp_path, 5 * MiB + 1)
    with open_destination(url, settings=settings) as destination:
        stored = put(destination, source)
        assert stored.checksum == source.digest.sha256
        assert destination.read_digest(NAME) == source.digest
        assert destination.read_digest("absent.csv") is None
    assert (root / NAME).read_bytes() == source.data
    assert files_under(root) == [NAME]


def negotiated_cipher(destination) -> str:
    return destination._ssh.get_transport().local_cipher


def test_aes_gcm_is_offered_first_and_a_server_without_it_still_serves(openssh, tmp_path, keys):
    """PREFERRED_CIPHERS (loader/destinations/sftp.py): OpenSSH, which has AES-GCM, gets it
    instead of paramiko's first choice (aes128-ctr); a server that offers only aes128-ctr is
    still served, and verified, with it."""
    source = source_file(tmp_path, 3 * MiB + 7)
    with open_destination(openssh.url, settings=openssh.settings) as destination:
        destination.preflight()
        assert negotiated_cipher(destination) == "aes128-gcm@openssh.com"
        assert put(destination, source).checksum == source.digest.sha256
    with serving(tmp_path / "ctr-only", keys, encryption_algs=("aes128-ctr",)) as ctr_only:
        with ctr_only.open() as destination:
            destination.preflight()
            assert negotiated_cipher(destination) == "aes128-ctr"
            assert put(destination, source).checksum == source.digest.sha256
        assert (ctr_only.root / NAME).read_bytes() == source.data


def test_the_sftp_connection_sends_each_packet_at_once(openssh):
    """TCP_NODELAY on the SFTP socket: each request (a stat, a rename, a read) is one small
    packet whose answer the run waits for; with Nagle's algorithm it could wait for the
    server's delayed ACK first (at the benchmark's scale 10, 25 deliveries: the S3 + SFTP
    export 3.3-3.9 s without it, 2.7-2.9 s with it; docs/benchmarks.md)."""
    with open_destination(openssh.url, settings=openssh.settings) as destination:
        destination.preflight()
        sock = destination._ssh.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


# --- task 2: our stale .part files are removed at the next connect, nobody else's -------------


UPLOAD_SCRIPT = """
import signal
import sys
from pathlib import Path
from loader.destinations import open_destination

def interrupt(signum, frame):  # as the CLI does: SIGTERM unwinds like Ctrl-C
    raise KeyboardInterrupt(signal.Signals(signum).name)

signal.signal(signal.SIGTERM, interrupt)
url, path, name, size, sha256 = sys.argv[1:]
with open_destination(url) as destination:
    destination.put_file(Path(path), name, size=int(size), sha256=sha256)
"""


def part_sizes(root: Path) -> list[int]:
    sizes = []
    for path in root.glob("*.part"):
        with suppress(FileNotFoundError):
            sizes.append(path.stat().st_size)
    return sizes


def start_slow_upload(
    server: Server, source: Source, *, write_delay: float, stored: int = 0, **popen
) -> subprocess.Popen:
    """UPLOAD_SCRIPT in a subprocess, returned once its `.part` file on the server exists and
    holds at least `stored` bytes; every write takes the server `write_delay` seconds."""
    server.faults.write_delay = write_delay
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MIPS_SFTP_KNOWN_HOSTS": str(server.known_hosts),
        "MIPS_SFTP_KEY_FILE": str(server.settings.sftp_key_file),
    }
    writer = subprocess.Popen(
        [sys.executable, "-c", UPLOAD_SCRIPT, server.url, str(source.path), NAME]
        + [str(len(source.data)), source.digest.sha256],
        env=environment,
        cwd=REPO,
        **popen,
    )
    try:
        deadline = time.monotonic() + 30
        while not [size for size in part_sizes(server.root) if size >= stored]:
            assert writer.poll() is None, "the upload ended before it could be stopped"
            assert time.monotonic() < deadline, "no .part file appeared"
            time.sleep(0.02)
    except BaseException:
        writer.kill()
        writer.wait(30)
        raise
    return writer


def test_part_left_by_a_killed_upload_is_removed_at_the_next_connect(server, tmp_path):
    source = source_file(tmp_path, 2 * MiB)
    # 64 writes: the upload takes over half a second.
    writer = start_slow_upload(server, source, write_delay=0.01)
    try:
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(30)
    assert writer.returncode == -signal.SIGKILL
    server.faults.write_delay = 0
    [left_behind] = files_under(server.root)
    assert left_behind.startswith(f".{NAME}.mipspart-{host_tag()}-{writer.pid}-")
    foreign = [f".{NAME}.0123456789ab.part", f".{NAME}.mipspart-x.part", "notes.part"]
    for name in foreign:
        (server.root / name).write_bytes(b"not ours")

    with server.open() as destination:
        destination.stat(NAME)  # connecting is enough

    assert files_under(server.root) == sorted(foreign)


def planted_parts(pid_dead: int) -> dict[str, bool]:
    """Temporary names and whether a connect must remove them (see plant())."""
    now = time.time()
    old = now - STALE_PART_AGE_SECONDS - 60
    other_host = "0badc0de" if host_tag() != "0badc0de" else "0badc0df"

    def ours(host: str, pid: int, started: float) -> str:
        return f".{NAME}.mipspart-{host}-{pid}-{int(started):010d}-0123abcd.part"

    return {
        ours(host_tag(), pid_dead, now): True,  # this host, writer gone
        ours(other_host, 4242, old): True,  # another host, started and last written hours ago
        ours(host_tag(), os.getpid(), now): False,  # this host, writer alive (us)
        ours(other_host, 4243, now): False,  # another host, recent: may still be writing
        ours(other_host, 4244, old - 1): False,  # another host, started long ago, written now
        f".{NAME}.0123456789ab.part": False,  # the old format: cannot tell it is ours
        f".{NAME}.mipspart-{host_tag()}-{pid_dead}.part": False,  # similar, not our pattern
        f"{NAME}.mipspart-{host_tag()}-{pid_dead}-{int(now):010d}-0123abcd.part": False,
    }


def plant(directory: Path, planted: dict[str, bool]) -> None:
    """Write the planted files; the one of another host, started long ago and stale, also
    has an old modification time (the others are being written now, as far as mtime says)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, stale in planted.items():
        path = directory / name
        path.write_bytes(b"x")
        if stale and "-4242-" in name:
            started = int(name.split("-4242-")[1][:10])
            os.utime(path, (started, started))


def test_only_our_stale_parts_are_removed_from_root_and_subdirectories(server, tmp_path):
    planted = planted_parts(dead_pid())
    plant(server.root, planted)
    plant(server.root / "2025", planted)
    expected_root = sorted(name for name, stale in planted.items() if not stale)

    with server.open() as destination:
        destination.stat(NAME)
        assert [p for p in files_under(server.root) if "/" not in p] == expected_root
        # A subdirectory is cleared when an upload first goes there.
        destination.put_bytes(f"2025/{NAME}", b"data")

    kept_below = sorted(f"2025/{name}" for name in expected_root)
    assert files_under(server.root) == sorted(expected_root + kept_below + [f"2025/{NAME}"])


def test_openssh_stale_parts_removed_foreign_kept(openssh):
    url, root, settings, _ = openssh
    planted = planted_parts(dead_pid())
    plant(root, planted)
    with open_destination(url, settings=settings) as destination:
        destination.stat(NAME)
    assert files_under(root) == sorted(name for name, stale in planted.items() if not stale)


def test_temporary_names_say_who_wrote_them():
    name = temporary_name("2025/CA/data.csv", now=1767225600)
    directory, _, file_name = name.rpartition("/")
    assert directory == "2025/CA"
    assert file_name.startswith(f".data.csv.mipspart-{host_tag()}-{os.getpid()}-1767225600-")
    assert file_name.endswith(".part")


# --- task 3: file mode --------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "mode"), [(None, 0o600), ("0640", 0o640)])
def test_sftp_files_get_the_configured_mode(server, tmp_path, variable, mode):
    environment = {"MIPS_FILE_MODE": variable} if variable else {}
    settings = TransportSettings.from_env(
        environment,
        sftp_known_hosts=server.known_hosts,
        sftp_key_file=server.settings.sftp_key_file,
    )
    old_umask = os.umask(0o077)  # the server's umask must not decide the mode
    try:
        with open_destination(server.url, settings=settings) as destination:
            put(destination, source_file(tmp_path, 1000))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((server.root / NAME).stat().st_mode) == mode


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_openssh_files_get_the_configured_mode(openssh, tmp_path, mode):
    url, root, settings, _ = openssh
    with open_destination(url, settings=replace(settings, file_mode=mode)) as destination:
        put(destination, source_file(tmp_path, 1000))
        destination.put_bytes("manifest.json", b"{}")
    assert stat.S_IMODE((root / NAME).stat().st_mode) == mode
    assert stat.S_IMODE((root / "manifest.json").stat().st_mode) == mode


# --- task 5: preflight --------------------------------------------------------------------------


def test_sftp_preflight_passes_and_leaves_nothing(server):
    with server.open() as destination:
        destination.preflight()
    probes = [path for path in server.faults.opened_for_write if ".mips-preflight." in path]
    assert len(probes) == 1 and ".mipspart-" in probes[0]
    assert probes[0].startswith("..mips-preflight.mipspart-")  # as docs/destinations.md says
    assert files_under(server.root) == []


def test_openssh_preflight_passes_and_leaves_nothing(openssh):
    url, root, settings, _ = openssh
    with open_destination(url, settings=settings) as destination:
        destination.preflight()
    assert files_under(root) == []


def test_sftp_preflight_unknown_host_key_is_a_configuration_error(server, tmp_path, keys):
    other = make_ssh_key(tmp_path / "other_host_key")
    known_hosts = write_known_hosts(tmp_path / "kh", server.host, server.port, other.public_key)
    with (
        server.open(sftp_known_hosts=known_hosts) as destination,
        pytest.raises(ConfigurationError, match="host key for .* changed"),
    ):
        destination.preflight()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with (
        server.open(sftp_known_hosts=empty) as destination,
        pytest.raises(ConfigurationError, match="not in"),
    ):
        destination.preflight()


def test_sftp_preflight_wrong_password_is_a_configuration_error(server):
    with (
        server.open(sftp_key_file=None, sftp_password="hunter2/wrong") as destination,
        pytest.raises(ConfigurationError, match="authentication failed") as raised,
    ):
        destination.preflight()
    assert "hunter2" not in str(raised.value) and "\n" not in str(raised.value)


def test_sftp_preflight_read_only_directory_is_a_configuration_error(server):
    server.faults.deny_writes = True
    with server.open() as destination, pytest.raises(ConfigurationError, match="not writable"):
        destination.preflight()


def test_sftp_preflight_missing_directory_is_a_configuration_error(server):
    url = server.url + "no/such/dir"
    with (
        open_destination(url, settings=server.settings) as destination,
        pytest.raises(ConfigurationError, match="/no/such/dir does not exist"),
    ):
        destination.preflight()


def test_sftp_preflight_server_down_is_transient_and_unreachable(server):
    url = f"sftp://registry@127.0.0.1:{free_port()}/"
    with (
        open_destination(url, settings=server.settings) as destination,
        pytest.raises(UnreachableError, match="SFTP server unreachable"),
    ):
        destination.preflight()
    assert issubclass(UnreachableError, TransientDeliveryError)


# --- task 6: a polite guest on the registry's server ---------------------------------------------

KiB = 1024
READ_SIZE = LARGE_READ_SIZE  # the client's read request size (asyncssh states its limits)


def eventually(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in time"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "size",
    [48 * KiB, 0, 3 * READ_SIZE, MAX_IN_FLIGHT * READ_SIZE + 5],
    ids=["48KiB", "empty", "3-requests", "65-requests"],
)
def test_read_back_never_reads_at_or_past_the_end_of_the_file(server, tmp_path, size):
    """ProFTPD logs "requested read offset ... greater than size" for each read past the end;
    reading ahead 64 requests blindly made ~63 such lines per small file."""
    source = source_file(tmp_path, size)
    with server.open() as destination:
        put(destination, source)  # the upload's read-back of the .part file
        assert destination.read_digest(NAME) == source.digest  # status --verify

    past_the_end = [read for read in server.faults.reads if read.offset >= read.file_size]
    assert past_the_end == []
    [part] = [path for path in server.faults.opened_for_write if path.endswith(".part")]
    for path in (part, NAME):
        reads = [read for read in server.faults.reads if read.path == path]
        # Every byte asked for once, in order, no request reaching beyond the end.
        assert [read.offset for read in reads] == list(range(0, size, READ_SIZE))
        assert sum(read.length for read in reads) == size


def test_a_server_that_states_no_read_limit_is_read_in_32_KiB_requests(server, tmp_path):
    """Only a server that says it serves larger reads (limits@openssh.com) is asked for them:
    another might serve less, and a short read ends the pipelined read-ahead."""
    source = source_file(tmp_path, 100 * KiB)
    with server.open() as destination:
        put(destination, source)
        client = destination._connection()
        assert client._read_size() == LARGE_READ_SIZE  # asyncssh states its limits
        client.server_extensions, client._read_request_size = {}, None
        server.faults.reads.clear()

        assert destination.read_digest(NAME) == source.digest

    reads = [read.offset for read in server.faults.reads if read.path == NAME]
    assert reads == list(range(0, 100 * KiB, REQUEST_SIZE))


def test_a_file_longer_than_its_first_stat_said_is_read_to_its_end(server, tmp_path):
    source = source_file(tmp_path, 100 * KiB)
    with server.open() as destination:
        put(destination, source)
        server.faults.reads.clear()
        server.faults.understate_fstat = 40 * KiB  # as if it grew while we read it

        assert destination.read_digest(NAME) == source.digest

    # Read on one request at a time to the end, which one read (the last) confirms.
    past_the_end = [read for read in server.faults.reads if read.offset >= read.file_size]
    assert [read.offset for read in past_the_end] == [len(source.data)]


def test_every_session_ends_with_an_orderly_disconnect(server, tmp_path):
    """Closing the socket under the server (paramiko sends no SSH_MSG_DISCONNECT on close, and
    unread replies turn the close into a TCP reset) was logged "connection reset by peer"."""
    source = source_file(tmp_path, 48 * KiB)
    with server.open() as destination:
        destination.preflight()
    with server.open() as destination:
        put(destination, source)
        destination.read_digest(NAME)
    with server.open() as destination:
        destination.stat(NAME)

    eventually(lambda: len(server.faults.connection_ends) == 3)
    assert server.faults.connection_ends == [None, None, None]


def test_openssh_session_ends_with_an_orderly_disconnect(openssh, tmp_path):
    """sshd logs an orderly end as "Received disconnect ... :11: ..." and "Disconnected from
    user"; a socket closed under it, as a reset or nothing at all at its default log level."""
    with open_destination(openssh.url, settings=openssh.settings) as destination:
        put(destination, source_file(tmp_path, 48 * KiB))
    with open_destination(openssh.url, settings=openssh.settings) as destination:
        destination.stat(NAME)

    def ended(log: str) -> list[str]:
        return [line for line in log.splitlines() if line.startswith("Disconnected from user")]

    # sshd's processes write these lines each on their own: wait for both kinds
    eventually(
        lambda: (
            len(ended(openssh.log_path.read_text())) == 2
            and openssh.log_path.read_text().count("Received disconnect from") >= 2
        )
    )
    log = openssh.log_path.read_text()
    assert log.count("Received disconnect from") == 2 and ":11: " in log
    assert "reset" not in log.lower()


@pytest.mark.parametrize(
    ("writes", "write_delay"),
    [(8, 0.1), (64, 0.02)],
    ids=["all-sent", "beyond-the-window"],
)
def test_sigterm_mid_upload_closes_the_part_file_before_removing_it(
    server, tmp_path, writes, write_delay
):
    """ProFTPD: "aborting 1 unclosed file handle" when the .part was removed under its open
    write handle. The interruption itself still ends the upload.

    The signal comes once the server has stored the first write: by then the client has sent
    all 8 writes and waits for their replies, or, with 64 (more than asyncssh's 2 MiB channel
    window holds), has sent what fits and waits for replies before sending more rather than
    blocking in a send, which an interruption would cut in half."""
    source = source_file(tmp_path, writes * READ_SIZE)
    writer = start_slow_upload(
        server,
        source,
        write_delay=write_delay,
        stored=READ_SIZE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        os.kill(writer.pid, signal.SIGTERM)
    finally:
        _, stderr = writer.communicate(timeout=30)

    assert writer.returncode != 0 and "KeyboardInterrupt: SIGTERM" in stderr, stderr
    [part] = [path for path in server.faults.opened_for_write if path.endswith(".part")]
    assert [kind for kind, path in server.faults.file_events if path == part] == [
        "open",
        "close",
        "remove",
    ]
    assert files_under(server.root) == []
    eventually(lambda: server.faults.connection_ends)
    assert server.faults.connection_ends == [None]
