"""Processes the tests start or look for."""

from __future__ import annotations

import os
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


def postgres_target_env(cluster, schema: str, **extra: str) -> dict[str, str]:
    """The environment of a child `mips-loader --target postgres` reaching the session's
    running cluster (a child on `dev` would try to start a cluster of its own)."""
    return {
        **os.environ,
        "MIPS_PG_HOST": str(cluster.socket_dir),
        "MIPS_PG_PORT": str(cluster.port),
        "MIPS_PG_USER": cluster.user,
        "MIPS_PG_DATABASE": cluster.dbname,
        "MIPS_PG_SCHEMA": schema,
        **extra,
    }
