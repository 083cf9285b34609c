"""The next slices unloaded while the current one is uploaded: a small, bounded pipeline.

An export spends its time in two kinds of work that do not compete for the same resource:
unloading a slice (the warehouse runs the query, this process hashes and writes the file) and
uploading it (S3 and SFTP, network and the servers' disks). `UnloadsAhead` runs the unloads of
the next `jobs - 1` deliveries in worker threads, each with its own warehouse session (opened
when the run starts, reading the same published build as the run), while
the run uploads the current one on its own thread. Everything else stays as it was:

- the run takes the slices strictly in delivery order, so records, run-log lines and output
  come out in the same order as with one job;
- at most `jobs` slice files exist at a time (the one being uploaded and those unloaded
  ahead), each streamed to disk: memory does not grow with `jobs` beyond a block per thread;
- the run lock and the shrink guard are untouched: the lock is held by the run's own session,
  the guard reads the last SFTP delivery when the slice's turn comes;
- `jobs = 1` unloads on the run's own thread and session, exactly as before the pipeline.

Closing cancels what has not started, interrupts what is running (the warehouse session's
cancel), waits for the threads and removes every file unloaded but never taken.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from loader.engines.slice_files import UnloadedSlice
from loader.errors import INTERRUPTED
from loader.marts.deliveries import Delivery

DEFAULT_JOBS = 2
MAX_JOBS = 8


class UnloadsAhead:
    def __init__(self, read, deliveries: Sequence[Delivery], work_dir: Path | None, jobs: int):
        """`read` is the run's `PublishedBuild`: it unloads on the run's own thread, and
        gives the sessions of the threads ahead (each reading the same build)."""
        if not 1 <= jobs <= MAX_JOBS:
            raise ValueError(f"jobs must be 1 to {MAX_JOBS}, not {jobs}")
        self._read = read
        self._deliveries = list(deliveries)
        self._work_dir = work_dir
        self._jobs = jobs
        self._futures: dict[int, Future] = {}
        self._submitted = 0
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._sessions: list = []
        self._opened = contextlib.ExitStack()

    def __enter__(self) -> UnloadsAhead:
        ahead = min(self._jobs - 1, max(len(self._deliveries) - 1, 0))
        if ahead > 0:
            with contextlib.ExitStack() as opening:
                self._sessions = opening.enter_context(self._read.unload_sessions(ahead))
                self._opened = opening.pop_all()
        for session in self._sessions:
            self._idle.put(session)
        if self._sessions:
            self._pool = ThreadPoolExecutor(
                max_workers=len(self._sessions), thread_name_prefix="mips-unload"
            )
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def take(self, index: int) -> UnloadedSlice:
        """Delivery `index`'s slice (its unload's error if it failed); starts the ones after
        it, as far ahead as there are sessions. Call with 0, 1, 2, … in order."""
        if self._pool is None:
            return self._read.unload(self._deliveries[index], self._work_dir)
        last = min(index + len(self._sessions), len(self._deliveries) - 1)
        while self._submitted <= last:
            delivery = self._deliveries[self._submitted]
            self._futures[self._submitted] = self._pool.submit(self._unload, delivery)
            self._submitted += 1
        return self._futures.pop(index).result()

    def close(self) -> None:
        if self._pool is not None:
            for future in self._futures.values():
                future.cancel()
            for session in self._sessions:
                with contextlib.suppress(Exception):
                    session.cancel_unload()
            self._pool.shutdown(wait=True)
            for future in self._futures.values():
                if future.done() and not future.cancelled() and future.exception() is None:
                    path = future.result().path
                    if path is not None:
                        path.unlink(missing_ok=True)
            self._futures.clear()
            self._pool = None
        self._opened.close()

    def _unload(self, delivery: Delivery) -> UnloadedSlice:
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt("interrupted before this slice was unloaded")
        return self._session().unload(delivery, self._work_dir)

    def _session(self):
        """This thread's own session, taken once from those opened for the run."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._idle.get_nowait()
        return session
