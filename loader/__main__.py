"""`mips-loader` (and `python -m loader`): signal handlers first, then the command line.

Importing the command line takes a moment (click, psycopg, boto3, paramiko); a SIGTERM in that
moment must be an interruption like any later one (exit 1, one line or one JSON document),
not Python's default death (exit 143 and nothing said)."""

from __future__ import annotations

import sys


def main() -> None:
    from loader import signals

    signals.install()
    # before any thread: the export's buffers then never pile up in per-thread arenas
    from loader import allocator

    allocator.bound_footprint()
    try:
        from loader.cli import cli
    except KeyboardInterrupt:
        from loader.cli import interrupted_while_starting  # the handlers stay: a second signal

        sys.exit(interrupted_while_starting(sys.argv[1:]))
    cli()


if __name__ == "__main__":
    main()
