"""Running a contender as a child process: its wall time, peak memory and JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ContenderFailed(RuntimeError):
    """A timed child process exited with an error; the message carries its stderr tail."""


@dataclass(frozen=True)
class Measured:
    seconds: float
    max_rss_bytes: int
    stdout: str

    def json(self) -> Any:
        """The last line of stdout that parses as JSON (commands may print more before it)."""
        text = self.stdout.strip()
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
        start = text.find("\n{")
        return json.loads(text[start + 1 :] if start >= 0 else text)


POLL_SECONDS = 0.02


def _high_water_mark(pid: int) -> int:
    """The process's own peak RSS so far (VmHWM, bytes); 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def measure(
    command: list[str],
    *,
    env: dict[str, str],
    log_dir: Path,
    label: str,
    ok_codes: tuple[int, ...] = (0,),
    cwd: Path | None = None,
) -> Measured:
    """Run `command`; its wall time and peak memory (max of its VmHWM, sampled every 20 ms).

    Not ru_maxrss: a child spawned with vfork inherits its parent's high-water mark at exec,
    so every child of this (large) process would report at least the parent's size. VmHWM is
    the child's own memory map's peak; sampling misses only growth in its last 20 ms.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / f"{label}.out", log_dir / f"{label}.err"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env, cwd=cwd
        )
        peak = 0
        try:
            while True:
                pid, status = os.waitpid(process.pid, os.WNOHANG)
                if pid:
                    break
                peak = max(peak, _high_water_mark(process.pid))
                time.sleep(POLL_SECONDS)
        except BaseException:
            # Interrupted: the contender must not outlive the benchmark (and its server).
            process.kill()
            process.wait()
            raise
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in ok_codes:
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise ContenderFailed(f"{label} exited with {process.returncode}:\n{tail}")
    return Measured(seconds, peak, stdout_path.read_text(errors="replace"))
