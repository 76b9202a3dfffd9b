"""Progress on stderr: a live bar on a terminal; plain log lines at a steady interval when
stderr goes to a file (a cluster job, a CI log), so a redirected log shows life; nothing
when disabled (``--json``). No torch here: the runtime reports through it too.

    progress = Progress(enabled=True)
    with progress.task("epoch 1/4", total=430, unit="step") as task:
        for ...:
            task.advance(images=128, loss=2.31, sparsity=0.81)

A plain line: ``epoch 1/4: step 120/430 (28%) loss 2.31 sparsity 0.81 | 512 img/s, ETA 0:35``.
``SLTC_PROGRESS_SECONDS`` sets the interval between plain lines (default 10).
"""

from __future__ import annotations

import os
import sys
import time

INTERVAL_ENV = "SLTC_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0
QUICK = 2.0  # seconds: a task quicker than this leaves no line behind unless kept


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def _shown(stats: dict) -> str:
    return " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in stats.items() if v is not None)


class Task:
    """One stretch of work with a known (or unknown: None) number of units."""

    def __init__(self, progress: Progress, description: str, total: int | None, unit: str,
                 keep: bool):
        self.progress, self.description, self.total, self.unit = progress, description, total, unit
        self.keep = keep
        self.done = self.images = 0
        self.stats: dict = {}
        self.start = self.last = time.perf_counter()
        self.bar = self.bar_task = None

    def __enter__(self) -> Task:
        if self.progress.fancy:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                TextColumn("{task.fields[stats]}"),
                                console=Console(file=self.progress.stream),
                                transient=not self.keep)
            self.bar.__enter__()
            self.bar_task = self.bar.add_task(self.description, total=self.total, stats="")
        return self

    def advance(self, n: int = 1, images: int = 0, **stats) -> None:
        self.done += n
        self.images += images
        self.stats.update(stats)
        if self.bar is not None:
            self.bar.update(self.bar_task, advance=n, total=self.total, stats=_shown(self.stats))
        elif self.progress.enabled and time.perf_counter() - self.last >= self.progress.interval:
            self._line()

    def _line(self) -> None:
        now = time.perf_counter()
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        where = f"{self.unit} {self.done}/{self.total}" if self.total else f"{self.unit} {self.done}"
        if self.total:
            where += f" ({100 * self.done / self.total:.0f}%)"
        rate = [f"{self.images / elapsed:.0f} img/s"] if self.images else []
        if self.total and self.done < self.total and self.done:
            rate.append(f"ETA {_clock(elapsed / self.done * (self.total - self.done))}")
        else:
            rate.append(f"{_clock(elapsed)} elapsed")
        stats = _shown(self.stats)
        print(f"{self.description}: {where}{' ' + stats if stats else ''} | {', '.join(rate)}",
              file=self.progress.stream, flush=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif self.progress.enabled and exc[0] is None and (
                self.keep or time.perf_counter() - self.start >= QUICK):
            self._line()


class Progress:
    """Where tasks report: a live bar on a terminal, plain lines otherwise, or nothing."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = _interval()
        self.fancy = enabled and self.stream.isatty() and _has_rich()

    def task(self, description: str, total: int | None = None, unit: str = "batch",
             keep: bool = False) -> Task:
        """A task; its last line stays (``keep``), or goes where it took under two seconds."""
        return Task(self, description, total, unit, keep)

    def say(self, message: str) -> None:
        if self.enabled:
            print(message, file=self.stream, flush=True)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


QUIET = Progress(enabled=False)
