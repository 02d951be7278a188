"""Progress for every step a user waits on (frozen-encoder passes, decoding files, predicting,
exporting): a rich bar with rate and ETA on a terminal, and where output is not a terminal (CI,
``| tee``, nohup) a plain log line every ``POLYMODAL_PROGRESS_EVERY`` seconds (default 10) with
rows done, rate and ETA. Steps that finish before the first interval print nothing.

``set_enabled(False)`` (the CLI's ``--quiet``) or ``POLYMODAL_PROGRESS=0`` turns it off; only
the main process of a multi-process run reports.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("polymodal.progress")
_enabled: bool | None = None  # None: decided by the environment
_active = False  # a bar is on screen: a nested step reports nothing (rich allows one live display)


def set_enabled(on: bool | None) -> None:
    """Force progress reports on or off (None: back to ``POLYMODAL_PROGRESS``, default on)."""
    global _enabled
    _enabled = on


def hold(on: bool) -> None:
    """Mark a live display (e.g. the training bar) as on screen, so nested steps stay silent."""
    global _active
    _active = on


def enabled() -> bool:
    if _enabled is not None:
        return _enabled
    return os.environ.get("POLYMODAL_PROGRESS", "1").lower() not in ("0", "false", "no", "off")


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _interval() -> float:
    try:
        return float(os.environ.get("POLYMODAL_PROGRESS_EVERY", "10"))
    except ValueError:
        return 10.0


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class Reporter:
    """``advance(n)`` after each chunk of work; reports as the module docstring says."""

    def __init__(self, total: int, what: str, unit: str, bar: Any = None) -> None:
        self.total, self.what, self.unit, self.bar = max(int(total), 0), what, unit, bar
        self.done = 0
        self.start = self.last = time.perf_counter()
        self.every = _interval()
        self.task = bar.add_task(what, total=self.total) if bar is not None else None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, advance=n)
            return
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        msg = f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({rate:,.1f} {self.unit}/s"
        if rate > 0 and self.total > self.done:
            msg += f", ETA {_clock((self.total - self.done) / rate)}"
        return msg + f", {_clock(elapsed)} elapsed)"

    def finish(self) -> None:
        elapsed = time.perf_counter() - self.start
        if self.bar is None and elapsed >= self.every:  # only steps long enough to have waited
            log.info(
                "%s: done, %s %s in %s", self.what, f"{self.done:,}", self.unit, _clock(elapsed)
            )


class _Silent(Reporter):
    def advance(self, n: int = 1) -> None:
        self.done += n

    def finish(self) -> None:
        return None


def _terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress(total: int, what: str, unit: str = "rows") -> Iterator[Reporter]:
    """A :class:`Reporter` for ``total`` units of one step named ``what``."""
    global _active
    if not enabled() or not _main_process() or total <= 0 or _active:
        yield _Silent(total, what, unit)
        return
    if not _terminal():
        reporter = Reporter(total, what, unit)
        yield reporter
        reporter.finish()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn(unit), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        transient=True, console=Console(stderr=True),
    ) as bar:  # fmt: skip
        _active = True
        try:
            yield Reporter(total, what, unit, bar)
        finally:
            _active = False
