"""Processes the tests look for."""

from __future__ import annotations

from pathlib import Path

import psutil


def postgres_pids(data_dir: Path) -> list[int]:
    """Postmasters serving `data_dir` (their command line names it)."""
    pids = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(data_dir) in cmdline:
            pids.append(process.pid)
    return pids
