"""The terminal progress bar: drawn on a terminal (or when forced), silent in logs."""

from __future__ import annotations

import io

from ggstack.core.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_draws_on_a_terminal_and_ends_the_line(monkeypatch) -> None:
    monkeypatch.delenv("GGSTACK_PROGRESS", raising=False)
    out = Terminal()
    with Progress("indexing files", 4, unit="files", stream=out) as bar:
        for _ in range(4):
            bar.advance()
    assert out.getvalue().endswith("\rindexing files [" + "#" * 30 + "] 4/4 files 100%\n")
    assert Progress("x", 4, stream=out).line() == "x [" + "." * 30 + "] 0/4   0%"


def test_silent_when_not_a_terminal(monkeypatch) -> None:
    monkeypatch.delenv("GGSTACK_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress("converting", 2, stream=out) as bar:
        bar.advance(2)
    assert out.getvalue() == ""
    monkeypatch.setenv("GGSTACK_PROGRESS", "1")
    with Progress("converting", 2, stream=out) as bar:
        bar.update(1, 3)
    assert "1/3" in out.getvalue()
