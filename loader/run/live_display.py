"""The export as a person at a terminal follows it: a live table of the deliveries.

One line per delivery (year/state, stage, rows, bytes, status) under a bar with the share of
deliveries finished and an ETA, redrawn in place on stderr by `rich`. Only for a terminal:
`mips-loader export` uses it when stdout and stderr are both terminals and `--json` is not
given; a pipe, a file or `--json` get exactly the plain output. It shows what the run shows
anyway (names, counts, sizes, statuses), never a row of data.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from loader.run.export import STAGE_DONE, STAGE_S3, STAGE_SFTP, STAGE_UNLOAD, Step

_STAGE_TEXT = {
    STAGE_UNLOAD: "unloading",
    STAGE_S3: "S3: upload, verify",
    STAGE_SFTP: "SFTP: upload, read back",
}
_STATUS_STYLE = {"ok": "green", "dry run": "green", "failed": "bold red", "interrupted": "yellow"}


@dataclass
class _Line:
    label: str
    stage: str = "waiting"
    rows: int | None = None
    bytes: int | None = None
    status: str | None = None


class LiveExportDisplay:
    """Use as a context manager; pass `update` as the export's progress callback."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._lines: dict[int, _Line] = {}
        self._lock = threading.Lock()
        self._bar = Progress(
            TextColumn("[bold]deliveries"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._console,
        )
        self._task = None
        self._live = Live(
            self._render(), console=self._console, refresh_per_second=8, transient=False
        )
        self._started = time.monotonic()

    def __enter__(self) -> LiveExportDisplay:
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._live.update(self._render(), refresh=True)
        self._live.__exit__(*exc_info)

    def update(self, step: Step) -> None:
        with self._lock:
            if self._task is None:
                self._task = self._bar.add_task("deliveries", total=step.total)
            line = self._lines.setdefault(step.index, _Line(step.label))
            line.stage = step.stage
            if step.rows is not None:
                line.rows, line.bytes = step.rows, step.bytes
            if step.stage == STAGE_DONE:
                line.status = step.detail
                self._bar.update(self._task, completed=self._finished())
            self._live.update(self._render())

    def _finished(self) -> int:
        return sum(1 for line in self._lines.values() if line.status is not None)

    def _render(self) -> Group:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column, justify in (
            ("delivery", "left"),
            ("stage", "left"),
            ("rows", "right"),
            ("bytes", "right"),
            ("status", "left"),
        ):
            table.add_column(column, justify=justify)
        for _, line in sorted(self._lines.items()):
            status = line.status or ""
            stage = "" if line.status is not None else _STAGE_TEXT.get(line.stage, line.stage)
            table.add_row(
                line.label,
                stage,
                "" if line.rows is None else f"{line.rows:,}",
                "" if line.bytes is None else f"{line.bytes:,}",
                f"[{_STATUS_STYLE.get(status, 'red')}]{status}[/]" if status else "",
            )
        return Group(self._bar, table)
