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
    before = set(sys.modules)
    try:
        from loader.cli import cli
    except KeyboardInterrupt:
        # The modules the interrupted import left behind, some only half run (a package whose
        # `from .x import *` was cut short), would break the next import of the same names:
        # forgotten, they are imported afresh. The handlers stay: a second signal interrupts.
        for name in set(sys.modules) - before:
            del sys.modules[name]
        from loader.cli import interrupted_while_starting

        sys.exit(interrupted_while_starting(sys.argv[1:]))
    cli()


if __name__ == "__main__":
    main()
