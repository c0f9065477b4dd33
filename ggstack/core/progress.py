"""A progress bar for long work a person watches: model conversion, indexing, `ggstack models`.

It draws on stderr only when stderr is a terminal (or GGSTACK_PROGRESS=1 says to anyway), so
logs collected by a service manager or CI get no carriage-return noise; there the work's own
log lines say when it starts and ends.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Self, TextIO

WIDTH = 30
#: Redraws at most this often, however fast the work advances (the last step always draws).
INTERVAL_S = 0.1


def wanted(stream: TextIO) -> bool:
    forced = os.environ.get("GGSTACK_PROGRESS")
    if forced is not None:
        return forced not in ("", "0")
    return stream.isatty()


class Progress:
    """`with Progress("converting x", total=n, unit="tensors") as bar: bar.advance()`."""

    def __init__(self, label: str, total: int, *, unit: str = "", stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.unit = unit
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = wanted(self.stream)
        self._drawn_at = 0.0

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self.enabled and (now - self._drawn_at >= INTERVAL_S or self.done >= self.total):
            self._drawn_at = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * WIDTH)
        unit = f" {self.unit}" if self.unit else ""
        return (f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] "
                f"{self.done}/{self.total}{unit} {fraction:4.0%}")

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
