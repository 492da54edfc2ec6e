"""Progress of long commands: a tqdm bar on a terminal, plain periodic lines otherwise.

Captured to a file, a redrawn bar becomes thousands of carriage-return redraws with escape
codes; ``bar`` returns tqdm only when its stream is a terminal, and otherwise a ``PlainBar``
that prints one readable line every ``every`` seconds (and at the end) with the count, the
elapsed time and an estimate of the time left::

    unet 1200/6000 (20%) 14m 10s elapsed, ~56m 40s left, mse=0.0931
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


class PlainBar:
    """The part of tqdm's interface Mnemo uses, printing plain lines at most every ``every`` s."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        every: float = 30.0,
        file: TextIO | None = None,
    ) -> None:
        self.iterable = iterable
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.every = every
        self.file = file or sys.stderr
        self.n = 0
        self.postfix = ""
        self.start = time.monotonic()
        self.last = self.start
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> PlainBar:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc} {count}".strip()]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        timing = f"{_clock(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total:
            timing += f", ~{_clock(elapsed / self.n * (self.total - self.n))} left"
        return " ".join(parts) + f" {timing}" + (f", {self.postfix}" if self.postfix else "")

    def _emit(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._emit()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        """Nothing to redraw: lines are printed by ``update``."""

    def write(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._emit()


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    every: float = 30.0,
    file: TextIO | None = None,
    disable: bool = False,
) -> Any:
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a ``PlainBar``; none if ``disable``."""
    from tqdm import tqdm

    stream = file or sys.stderr
    if disable:
        return tqdm(iterable, total=total, disable=True)
    if stream.isatty():
        return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, file=stream)
    return PlainBar(iterable, total=total, desc=desc, every=every, file=stream)
