"""The dev server: this clone's embedded PostgreSQL, kept running between commands (`make dev`).

`mips-loader dev serve` owns the cluster the way any command that starts it does
(loader/environment/cluster.py): it holds the owner lock, the server is its child and dies with
it, and the commands run meanwhile are its guests, which never stop it; before stopping, it
waits for them. It differs in how long it lives: until `mips-loader dev stop` (SIGTERM), Ctrl-C
or a hang-up. `mips-loader dev start` runs it in the background, in a session of its own, so
closing the terminal does not stop it.

`<data dir>.dev.lock` tells whether a dev server runs: the serve process holds an exclusive
`flock` on it for its whole life and writes its pid into it at once ("starting"), then again
when its server answers ("serving"). The kernel drops the lock however the process ends, so a
held lock means a live dev server, and the pid in the file is its own. `dev stop` signals that
pid only: never a server some other command started.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loader.environment.cluster import EmbeddedCluster
from loader.errors import TerminalError

START_TIMEOUT_S = 120
LOG_NAME = "dev-server.log"


class DevServerError(TerminalError):
    """The dev server could not be started, found or stopped; the message says why."""


def log_path(data_dir: Path) -> Path:
    """The background server's output (its own lines, and the waits for guests)."""
    return data_dir.parent / LOG_NAME


def _lock_path(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}.dev.lock"


@dataclass(frozen=True)
class DevServer:
    pid: int
    serving: bool  # False while its cluster starts


def find(data_dir: Path) -> DevServer | None:
    """The dev server of `data_dir`, or None when none runs."""
    import fcntl

    path = _lock_path(data_dir)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_state(path)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)


def _read_state(path: Path) -> DevServer:
    """What a live server wrote; it writes right after taking the lock, so an empty file is
    an instant's state."""
    for _ in range(40):
        words = path.read_text().split()
        if len(words) == 2 and words[0].isdigit():
            return DevServer(pid=int(words[0]), serving=words[1] == "serving")
        time.sleep(0.05)
    raise DevServerError(f"{path} is locked but says no pid")


def _write_state(lock: int, state: str) -> None:
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()} {state}\n".encode(), 0)


def _take_lock(data_dir: Path) -> int:
    """The dev lock, exclusively; DevServerError naming the pid when a dev server runs."""
    import fcntl

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    path = _lock_path(data_dir)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(40):  # `running_pid` of another command may hold it for an instant
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return descriptor
        except BlockingIOError:
            time.sleep(0.05)
    os.close(descriptor)
    raise DevServerError(
        f"the dev server of {data_dir} runs already (pid {_read_state(path).pid}); "
        "stop it with `mips-loader dev stop`"
    )


def serve(data_dir: Path, say: Callable[[str], None]) -> None:
    """Run the cluster on `data_dir` until SIGTERM, SIGINT or SIGHUP, then stop it after its
    guests (a second signal stops it at once)."""
    lock = _take_lock(data_dir)
    _write_state(lock, "starting")
    cluster = EmbeddedCluster(data_dir)
    try:
        connection = cluster.start()
        if cluster.reused:
            raise DevServerError(
                f"another mips-loader command runs the embedded PostgreSQL on {data_dir} for "
                "its own duration; start the dev server when it has ended"
            )
        _write_state(lock, "serving")
        say(
            f"dev server (pid {os.getpid()}): PostgreSQL on {data_dir}, socket dir "
            f"{connection.socket_dir}, port {connection.port}; stop it with `mips-loader dev stop`"
        )
        try:
            while cluster.serving():
                time.sleep(0.5)
        except KeyboardInterrupt:
            say("dev server: stopping")
            return
        raise DevServerError(f"postgres ended on its own; see {data_dir / 'server.log'}")
    finally:
        cluster.stop()
        os.ftruncate(lock, 0)
        os.close(lock)


def start_in_background(project_dir: Path, data_dir: Path) -> int:
    """`mips-loader dev serve` detached from this terminal; its pid, once its server answers."""
    log = log_path(data_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "loader.cli", "dev", "serve", "--project-dir", str(project_dir)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=project_dir,
            # no controlling terminal: the shell's Ctrl-C and hang-up do not reach it
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise DevServerError(f"the dev server did not start: {_last_line(log)} (see {log})")
        if find(data_dir) == DevServer(pid=server.pid, serving=True):
            server.returncode = 0  # it lives on, detached: not our child to wait for any more
            return server.pid
        if time.monotonic() > deadline:
            server.terminate()
            raise DevServerError(f"the dev server did not answer within {START_TIMEOUT_S} s")
        time.sleep(0.1)


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def stop(data_dir: Path, say: Callable[[str], None]) -> int | None:
    """Stop the dev server of `data_dir` and wait until it has ended: its pid, or None when
    none ran. It waits for the mips-loader commands using it first (they are its guests)."""
    import signal

    server = find(data_dir)
    if server is None:
        return None
    pid = server.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    said = False
    started = time.monotonic()
    while (still := find(data_dir)) is not None and still.pid == pid:
        if not said and time.monotonic() - started > 5:
            say(
                f"waiting for the mips-loader commands that use it to end (pid {pid}, "
                f"see {log_path(data_dir)})"
            )
            said = True
        time.sleep(0.1)
    return pid
