"""The loader's expected failures: one hierarchy for sources, destinations and the run, each
error of one kind, and each kind one exit code.

Every expected failure is a `MipsError`, whose message is one line that names what is wrong and
is safe to print and log (no secret, no patient value). Its `kind` names the cause, the same
cause being the same kind in every command, and the kind decides the command's exit code
(`EXIT_CODES`: 2 for usage and configuration, 1 for the others). docs/loader.md ("Errors")
has the table of kinds and causes; `tests/python/test_docs.py` checks it against `EXIT_CODES`.

Only `TransientError` (unreachable included) is retried, by `loader.retry` alone.
"""

from __future__ import annotations

import threading

EXIT_FAILED = 1
EXIT_USAGE = 2

USAGE = "usage"
CONFIGURATION = "configuration"
UNREACHABLE = "unreachable"
TRANSIENT = "transient"
LOCKED = "locked"
INTERRUPTION = "interrupted"
TERMINAL = "terminal"

EXIT_CODES = {
    USAGE: EXIT_USAGE,
    CONFIGURATION: EXIT_USAGE,
    UNREACHABLE: EXIT_FAILED,
    TRANSIENT: EXIT_FAILED,
    LOCKED: EXIT_FAILED,
    INTERRUPTION: EXIT_FAILED,
    TERMINAL: EXIT_FAILED,
}


class MipsError(Exception):
    """An expected failure with a one-line message that is safe to show."""

    kind = TERMINAL

    @property
    def exit_code(self) -> int:
        """The command's exit code for this error: its kind's (a class may fix its own)."""
        return EXIT_CODES[self.kind]

    def with_kind(self, kind: str) -> MipsError:
        """This error, of `kind` (one of `EXIT_CODES`)."""
        if kind not in EXIT_CODES:
            raise ValueError(f"not an error kind: {kind!r}")
        self.kind = kind
        return self

    def keeping_kind_of(self, cause: BaseException) -> MipsError:
        """This error, of the kind of `cause` when that is one of ours: a message that adds
        context to a failure does not change what the failure is."""
        return self.with_kind(cause.kind) if isinstance(cause, MipsError) else self


class TransientError(MipsError):
    """Worth retrying: the same request may succeed in a moment."""

    kind = TRANSIENT


class UnreachableError(TransientError):
    """Nothing answered (refused, timed out, name not resolved): retried like any transient
    error; once the retries are spent, whatever needs that server stops."""

    kind = UNREACHABLE


class TerminalError(MipsError):
    """Retrying will not help."""


class ConfigurationError(TerminalError):
    """The command cannot run as configured; nothing was attempted."""

    kind = CONFIGURATION


class LockedError(TerminalError):
    """Another run holds the lock this one needs."""

    kind = LOCKED


# Set by the CLI's signal handler (SIGINT, SIGTERM, SIGHUP) before it raises KeyboardInterrupt:
# a library below us (psycopg ending a COPY) may turn that exception into another one, so the
# run asks this flag, not only the exception, whether it was interrupted.
INTERRUPTED = threading.Event()
