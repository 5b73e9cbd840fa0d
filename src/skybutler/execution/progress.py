"""A rich progress bar of a run: done/total, succeeded, failed and blocked counts, ETA."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressReporter:
    """Counts finished quanta by status; shows a live bar on stderr when enabled."""

    def __init__(self, total: int, enabled: bool = True, description: str = "quanta"):
        self.total = total
        self.counts = {"succeeded": 0, "failed": 0, "blocked": 0}
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None
        self.description = description

    def __enter__(self) -> ProgressReporter:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/] "
                           "[yellow]{task.fields[blocked]} blocked[/]"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(file=sys.stderr), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, ok=0, failed=0, blocked=0)
        return self

    def advance(self, status: str) -> None:
        self.counts[status] += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, ok=self.counts["succeeded"],
                                  failed=self.counts["failed"], blocked=self.counts["blocked"])

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
