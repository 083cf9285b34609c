"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"') + f" (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def describe(conn) -> dict:
    """CPU, cores, RAM, OS, Python, PostgreSQL and dbt versions; `conn` is the benchmark DB."""
    from importlib.metadata import version

    server = conn.execute("select version()").fetchone()[0]
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "os": _os_name(),
        "python": platform.python_version(),
        "postgresql": server.split(" on ")[0],
        "dbt_core": version("dbt-core"),
        "dbt_postgres": version("dbt-postgres"),
    }
