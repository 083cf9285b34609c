"""Where the unload's time goes: three ways to stream every slice to a file, on the same data.

1. the loader's own `unload_postgres_slice` (psycopg COPY; hash, count and write per row);
2. the same psycopg COPY with rows gathered into 1 MiB blocks before hash, count and write;
3. `psql \\copy ... to stdout` piped into Python, read in 1 MiB blocks (the floor's speed).

Each computes the SHA-256 and the row count and writes the file, so they do the same work.
Run on a benchmark home after `python -m bench` has built the models there:

    python -m bench.unload_experiment --home /tmp/bench-s100 --passes 2
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

import click

from bench.floor import copy_command
from bench.harness import EXPORT_MODEL, PROJECT_DIR, SLICE_COLUMNS, TARGET_SCHEMA

BLOCK = 1 << 20


def _sink(path: Path):
    from loader.engines.postgres import CsvRowCounter

    digest, counter = hashlib.sha256(), CsvRowCounter()
    handle = open(path, "wb")  # noqa: SIM115 - closed by the caller through the returned tuple

    def take(block: bytes) -> None:
        digest.update(block)
        counter.feed(block)
        handle.write(block)

    return take, handle


def loader_today(conn, relation, columns, slices, work: Path) -> None:
    from loader.engines.postgres import unload_postgres_slice

    for year, state in slices:
        unloaded = unload_postgres_slice(conn, relation, year, state, header=columns, work_dir=work)
        unloaded.path.unlink()


def buffered_copy(conn, relation, slices, work: Path) -> None:
    from loader.engines.postgres import slice_query

    for year, state in slices:
        take, handle = _sink(work / "buffered.csv")
        buffer = bytearray()
        with (
            handle,
            conn.cursor() as cursor,
            cursor.copy(slice_query(conn, relation, year, state)) as copy,
        ):
            for row in copy:
                buffer += row
                if len(buffer) >= BLOCK:
                    take(bytes(buffer))
                    buffer.clear()
            take(bytes(buffer))


def psql_pipe(conninfo, relation, columns, slices, work: Path) -> None:
    from loader.environment.cluster import binary_dir

    for year, state in slices:
        command = copy_command(relation, columns, year, state, Path("-"))
        command = command.replace(" to '-' ", " to stdout ")
        take, handle = _sink(work / "piped.csv")
        with (
            handle,
            subprocess.Popen(
                [str(binary_dir() / "psql"), "-X", "-q", "-d", conninfo, "-c", command],
                stdout=subprocess.PIPE,
            ) as process,
        ):
            while block := process.stdout.read(BLOCK):
                take(block)
        if process.returncode:
            raise click.ClickException(f"psql failed for {year}/{state}")


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=PROJECT_DIR / ".mips" / "bench",
    show_default=True,
)
@click.option("--passes", type=click.IntRange(min=1), default=2, show_default=True)
def main(home: Path, passes: int) -> None:
    """Time the three unload paths over every slice of the export model in --home's cluster."""
    import psycopg

    from loader.environment.cluster import running_cluster

    relation = f'"{TARGET_SCHEMA}"."{EXPORT_MODEL}"'
    with (
        running_cluster(home / "pgdata") as cluster,
        psycopg.connect(cluster.conninfo(), autocommit=True) as conn,
        tempfile.TemporaryDirectory(prefix="unload-experiment-", dir=home) as directory,
    ):
        work = Path(directory)
        slices = conn.execute(
            f"select distinct performance_year, state_code from {relation} order by 1, 2"
        ).fetchall()
        cursor = conn.execute(f"select * from {relation} where false")
        columns = [c.name for c in cursor.description if c.name not in SLICE_COLUMNS]
        paths = {
            "loader today": lambda: loader_today(conn, relation, columns, slices, work),
            "buffered COPY": lambda: buffered_copy(conn, relation, slices, work),
            "psql pipe": lambda: psql_pipe(cluster.conninfo(), relation, columns, slices, work),
        }
        for number in range(1, passes + 1):
            timings = []
            for name, unload in paths.items():
                started = time.monotonic()
                unload()
                timings.append(f"{name} {time.monotonic() - started:.1f} s")
            click.echo(f"pass {number}: " + " | ".join(timings))


if __name__ == "__main__":
    main()
