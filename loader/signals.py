"""The one place signals are handled: SIGINT (Ctrl-C), SIGTERM (a scheduler's timeout) and
SIGHUP (a closed terminal) all unwind the same way, on every command and target.

The handler sets `loader.errors.INTERRUPTED`, then raises KeyboardInterrupt in the main thread:
`with` blocks close (temporary files removed, an embedded server stopped, the run recorded as
interrupted). A library below us may turn that exception into another one (psycopg ending a
COPY), so the run asks the flag, not only the exception. The console script installs the
handlers before it imports anything heavy (loader/__main__.py), so a signal during start-up is
an interruption like any other.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from loader.errors import INTERRUPTED

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interrupt(signum: int, frame: object) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install(signums: tuple[int, ...] = HANDLED) -> dict[int, Any]:
    """Handle `signums` with `interrupt`; returns the handlers they had (nothing outside the
    main thread, where Python allows no handler)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, interrupt) for signum in signums}


def restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def unwinding(signums: tuple[int, ...] = HANDLED) -> Iterator[None]:
    """The `with` block unwinds on any of `signums`; the handlers before it come back after."""
    previous = install(signums)
    try:
        yield
    finally:
        restore(previous)
