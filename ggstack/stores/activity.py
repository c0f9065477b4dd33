"""Searches in flight, so background work on the same indexes can give way to them.

The start-up warm-up (ggstack.search.warmup) reads a store's keyword postings in the
background (72 MB from disk at 100k chunks in the bench's corpus). Read straight through
beside a stream of vector searches right after a start, it made each of them 5-10 ms slower
(p50 21-23 ms against 13-15 once it was done; docs/benchmarks.md, "Vector search over HTTP"):
two cores, the GIL, and one disk. Held back until the searches stop, it left the keyword
searches that came next to read their postings cold themselves (the first ones 50-100 ms).

So it reads one term at a time and, before each, waits for a quiet moment (no search for
IDLE_GAP_S), but no longer than SHARE times the step it just took: under a steady stream of
searches it still gets a third of the time, and finishes in about three times as long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Quiet time after the last search before background work takes its next step. A client's
#: next search follows its last one within a few milliseconds (its embedding, the answer).
IDLE_GAP_S = 0.02
#: Under steady searching, background work waits this many times as long as its last step took.
SHARE = 2.0


class SearchActivity:
    """Counts the searches running now (`searching()` around each) and when the last ended;
    `pace()` is called by one background worker between its steps."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._last_end = 0.0
        self._step_started: float | None = None

    @contextmanager
    def searching(self) -> Iterator[None]:
        with self._changed:
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._last_end = time.monotonic()
                self._changed.notify_all()

    def pace(self) -> None:
        """Before a step of background work (in a worker thread): wait for a quiet moment, at most
        SHARE x the previous step's time."""
        now = time.monotonic()
        step = 0.0 if self._step_started is None else now - self._step_started
        self.wait_quiet(max_wait_s=SHARE * step)
        self._step_started = time.monotonic()

    def wait_quiet(self, *, gap_s: float = IDLE_GAP_S, max_wait_s: float) -> bool:
        """Block until no search has run for `gap_s`, or `max_wait_s` passed; True if it was quiet."""
        deadline = time.monotonic() + max_wait_s
        with self._changed:
            while True:
                now = time.monotonic()
                quiet_at = self._last_end + gap_s
                if self._running == 0 and now >= quiet_at:
                    return True
                if now >= deadline:
                    return False
                # Woken early when a search ends; otherwise when the gap or the wait is over.
                wake = deadline if self._running else min(deadline, quiet_at)
                self._changed.wait(wake - now)
