"""The loader's expected failures: one hierarchy for sources, destinations and the run.

Every expected failure is a `MipsError`, whose message is one line that names what is wrong and
is safe to print and log (no secret, no patient value). Three kinds decide what happens next:

- `TransientError`: worth retrying (a dropped connection, a timeout, a 5xx, throttling).
  `loader.retry` is the only place that retries, with one explicit budget.
- `TerminalError`: retrying will not help (denied, missing, refused, failed verification).
- `ConfigurationError`: the command cannot start as given (a URL, a setting, a credential);
  nothing was written. The CLI exits with code 2 for it, 1 for the others.
"""

from __future__ import annotations

import threading

EXIT_FAILED = 1
EXIT_USAGE = 2


class MipsError(Exception):
    """An expected failure with a one-line message that is safe to show."""

    exit_code = EXIT_FAILED


class TransientError(MipsError):
    """Worth retrying: the same request may succeed in a moment."""


class TerminalError(MipsError):
    """Retrying will not help."""


class ConfigurationError(TerminalError):
    """The command cannot run as configured; nothing was attempted."""

    exit_code = EXIT_USAGE


# Set by the CLI's signal handler (SIGINT, SIGTERM, SIGHUP) before it raises KeyboardInterrupt:
# a library below us (psycopg ending a COPY) may turn that exception into another one, so the
# run asks this flag, not only the exception, whether it was interrupted.
INTERRUPTED = threading.Event()
