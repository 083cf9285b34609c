"""`export` on a real pseudo-terminal: the live display appears there and nowhere else.

The loader runs as a child process whose stdout and/or stderr is the slave side of a pty (what
a terminal gives a program); the test reads the master side, as a terminal emulator would.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

from tests.support.handmade import HANDMADE_SCHEMA
from tests.support.local_runs import RUN_DATE
from tests.support.model_scenarios import PROJECT_DIR
from tests.support.processes import postgres_target_env

ESCAPE = "\x1b["


@pytest.fixture
def command(models, cluster, profiles_dir, stores, tmp_path):
    s3, sftp = stores
    env = postgres_target_env(cluster, HANDMADE_SCHEMA, TERM="xterm-256color")
    for variable in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"):
        env.pop(variable, None)
    args = [
        sys.executable, "-m", "loader.cli", "export", "--date", RUN_DATE,
        "--s3-url", s3.as_uri(), "--sftp-url", sftp.as_uri(),
        "--target", "postgres", "--profiles-dir", str(profiles_dir),
    ]  # fmt: skip
    return args, env


def _terminal() -> tuple[int, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    return master, slave


def _read_all(master: int, process: subprocess.Popen, timeout: float = 60) -> str:
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_a_terminal_gets_the_live_display_then_the_summary(command):
    args, env = command
    master, slave = _terminal()
    process = subprocess.Popen(
        args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=PROJECT_DIR
    )
    os.close(slave)
    screen = _read_all(master, process)
    assert process.returncode == 0, screen
    assert ESCAPE in screen, "drawn with terminal control sequences"
    assert "deliveries" in screen and "ETA" in screen and "3/3" in screen
    for label in ("2022/CA", "2023/CA", "2025/TX"):
        assert label in screen
    # the summary table comes after the display, as without it
    assert screen.rindex("Quality_21742_MlUGF8grFd.csv") > screen.rindex("3/3")


def test_json_on_a_terminal_is_only_the_document(command):
    """stdout and stderr each a terminal, as in an interactive shell: no display anywhere, the
    document alone on stdout (stderr keeps its plain progress lines)."""
    args, env = command
    (out_master, out_slave), (err_master, err_slave) = _terminal(), _terminal()
    process = subprocess.Popen(
        [*args, "--json"], stdin=out_slave, stdout=out_slave, stderr=err_slave, env=env,
        cwd=PROJECT_DIR,
    )  # fmt: skip
    os.close(out_slave)
    os.close(err_slave)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(_read_all(err_master, process)))
    reader.start()
    screen = _read_all(out_master, process)
    reader.join(60)
    assert process.returncode == 0, screen
    assert ESCAPE not in screen and ESCAPE not in errors[0]
    document = json.loads(screen)
    assert [d["status"] for d in document["deliveries"]] == ["ok", "ok", "ok"]
    assert "2025/TX: ok" in errors[0]


def test_a_pipe_gets_the_plain_output(command):
    args, env = command
    piped = subprocess.run(args, env=env, cwd=PROJECT_DIR, capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert ESCAPE not in piped.stdout and piped.stderr == ""
    assert "2025/TX" in piped.stdout


def test_stdout_to_a_file_keeps_the_plain_progress_lines_on_the_terminal(command):
    """As before the display: a terminal on stderr alone gets one line per step."""
    args, env = command
    master, slave = _terminal()
    process = subprocess.Popen(
        args, stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=PROJECT_DIR
    )
    os.close(slave)
    screen = _read_all(master, process)
    summary = process.stdout.read().decode()
    assert process.returncode == 0, screen
    assert ESCAPE not in screen and ESCAPE not in summary
    assert screen.splitlines()[:2] == ["2022/CA: unloading", "2022/CA: 3 rows, 57 bytes to S3"]
    assert "2025/TX: uploading Quality_21742_MlUGF8grFd.csv to SFTP" in screen
    assert "2025/TX" in summary
