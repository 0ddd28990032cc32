"""Progress of a long command, on stderr, the same way for every system.

On a terminal it is a rich progress bar that disappears when the work ends; when
stderr is not a terminal (CI logs, a pipe) it is a plain line at most every few
seconds; with ``--json`` (``quiet=True``) it is nothing, so stdout and stderr stay
machine-readable. The engines report through a plain callback, so they never know
which of the three is showing them::

    with Progress("lattice reason", unit="rounds", quiet=as_json) as progress:
        engine.reason(on_round=lambda r, facts: progress.update(r, note=f"{facts} facts"))
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import IO, Any, Self

__all__ = ["Progress"]


class Progress:
    """A progress report for one long operation: ``update(done, total=, note=)`` as it goes."""

    def __init__(
        self,
        what: str,
        *,
        total: float | None = None,
        unit: str = "",
        quiet: bool = False,
        interval_s: float = 2.0,
        stream: IO[str] | None = None,
        clock: bool = False,
    ) -> None:
        """``clock``: the work reports nothing itself; show the seconds elapsed (of
        ``total`` seconds, when the work has a time budget), ticked by a thread."""
        self.what = what
        self.clock = clock
        self._stop: threading.Event | None = None
        self._ticker: threading.Thread | None = None
        self.total = total
        self.unit = unit
        self.quiet = quiet
        self.interval_s = interval_s
        self._stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._task: Any = None
        self._started = 0.0
        self._last_line = 0.0
        self._done = 0.0
        self._note = ""

    @property
    def interactive(self) -> bool:
        """True when a live bar is shown (stderr is a terminal and not quiet)."""
        isatty = getattr(self._stream, "isatty", None)
        return not self.quiet and callable(isatty) and bool(isatty())

    def __enter__(self) -> Self:
        self._started = self._last_line = time.monotonic()
        if self.interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[note]}"),
                console=Console(file=self._stream),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.what, total=self.total, note="")
        if self.clock and not self.quiet:
            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._tick, name="progress-clock", daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(0.5):
            elapsed = time.monotonic() - self._started
            self.update(elapsed if self.total is None else min(elapsed, self.total))

    def update(self, done: float, *, total: float | None = None, note: str = "") -> None:
        """Report ``done`` units so far (and the total, when it becomes known)."""
        self._done = done
        if total is not None:
            self.total = total
        self._note = note
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total, note=note)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval_s:
            self._last_line = now
            self._line(now)

    def advance(self, step: float = 1, *, note: str = "") -> None:
        """Report ``step`` more units done."""
        self.update(self._done + step, note=note or self._note)

    def _line(self, now: float) -> None:
        of = f"/{self.total:g}" if self.total is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        note = f" ({self._note})" if self._note else ""
        eta = ""
        if self.total and self._done:
            remaining = (now - self._started) * (self.total - self._done) / self._done
            eta = f", about {remaining:.0f} s left"
        self._stream.write(
            f"{self.what}: {self._done:g}{of}{unit}{note}, {now - self._started:.0f} s{eta}\n"
        )
        self._stream.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stop is not None and self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._stop = self._ticker = None
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
            self._bar = None
