"""Turning a model's streamed output into answer text and tool calls, token by token.

One parser instance reads one choice. Streamed and whole answers go through the same
parser (a whole answer is just fed at once), so both modes always agree. Text is released
as soon as it can no longer be part of a tool call; only text that might still become one
is held back (a `<tool_call>` prefix, or an answer that opens with JSON while tools are on).
Logprobs travel with the text they belong to; those of text that became a call are dropped,
as OpenAI reports logprobs for content only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ggstack.inference.logprobs import TokenLogprob
from ggstack.inference.tools import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, ToolCall, ToolSpec, parse_calls


@dataclass(frozen=True)
class Text:
    """Answer text, with the logprobs of the tokens it came from (when asked for)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Call:
    call: ToolCall


Piece = Text | Call


class OutputParser(Protocol):
    """Reads one choice's output; `finish` is called once, at the end, to flush what is held."""

    def feed(self, text: str, logprobs: Sequence[TokenLogprob] = ()) -> list[Piece]: ...

    def finish(self) -> list[Piece]: ...


@dataclass
class _Held:
    """Held text and the logprobs of the tokens that produced it."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def add(self, text: str, logprobs: Sequence[TokenLogprob]) -> None:
        self.text += text
        self.logprobs.extend(logprobs)

    def take(self, n_chars: int | None = None) -> Text:
        """Release the first `n_chars` (all by default); the held logprobs go with the first
        non-empty release (held text is at most a few tokens, so this is at most a token off)."""
        n = len(self.text) if n_chars is None else n_chars
        if n == 0 and self.text:
            return Text("")
        piece = Text(self.text[:n], tuple(self.logprobs))
        self.text, self.logprobs = self.text[n:], []
        return piece

    def drop(self, n_chars: int) -> None:
        self.text, self.logprobs = self.text[n_chars:], []


def _texts(*pieces: Text) -> list[Piece]:
    """Skip empty releases, unless they carry logprobs (a token whose text is still incomplete)."""
    return [p for p in pieces if p.text or p.logprobs]


class PlainParser:
    """No tools: everything is answer text, released at once."""

    def feed(self, text: str, logprobs: Sequence[TokenLogprob] = ()) -> list[Piece]:
        return _texts(Text(text, tuple(logprobs)))

    def finish(self) -> list[Piece]:
        return []


class ForcedCallParser:
    """Output constrained to a call (or a JSON array of calls): parsed once complete.

    If generation stopped early (max_tokens), the JSON is cut short and the raw text is the
    answer, with finish_reason "length" saying why.
    """

    def __init__(self, tools: Sequence[ToolSpec]) -> None:
        self._tools = tools
        self._held = _Held()

    def feed(self, text: str, logprobs: Sequence[TokenLogprob] = ()) -> list[Piece]:
        self._held.add(text, logprobs)
        return []

    def finish(self) -> list[Piece]:
        calls = parse_calls(self._held.text, self._tools)
        if calls:
            return [Call(c) for c in calls]
        return _texts(self._held.take())


class ToolCallParser:
    """`tool_choice: auto`: Hermes `<tool_call>{json}</tool_call>` blocks anywhere, or an answer
    that is nothing but a JSON call (or list of calls), possibly fenced or after `<|python_tag|>`.

    States: `start` (nothing but whitespace seen since the start or the last call), `text`
    (a plain answer, watched for an opening tag), `call` (inside a tag), `json` (the answer
    opened like JSON: held to the end, then it is a call or it is the answer).
    """

    _JSON_OPENERS = ("{", "[", "```", "<|python_tag|>")

    def __init__(self, tools: Sequence[ToolSpec]) -> None:
        self._tools = tools
        self._held = _Held()
        self._state = "start"

    def feed(self, text: str, logprobs: Sequence[TokenLogprob] = ()) -> list[Piece]:
        self._held.add(text, logprobs)
        out: list[Piece] = []
        while self._step(out):
            pass
        return out

    def _step(self, out: list[Piece]) -> bool:
        """Advance one state transition; False when more input is needed."""
        held = self._held
        if self._state == "start":
            body = held.text.lstrip()
            if not body:
                return False
            if body.startswith(TOOL_CALL_OPEN):
                held.drop(len(held.text) - len(body) + len(TOOL_CALL_OPEN))
                self._state = "call"
                return True
            if any(body.startswith(o) for o in self._JSON_OPENERS):
                self._state = "json"
                return False
            if any(o.startswith(body) for o in (TOOL_CALL_OPEN, *self._JSON_OPENERS)):
                return False  # could still become a tag or an opener
            self._state = "text"
            return True
        if self._state == "text":
            at = held.text.find(TOOL_CALL_OPEN)
            if at >= 0:
                out.extend(_texts(held.take(at)))
                held.drop(len(TOOL_CALL_OPEN))
                self._state = "call"
                return True
            keep = _partial_suffix(held.text, TOOL_CALL_OPEN)
            out.extend(_texts(held.take(len(held.text) - keep)))
            return False
        if self._state == "call":
            end = held.text.find(TOOL_CALL_CLOSE)
            if end < 0:
                return False
            inner = held.text[:end]
            calls = parse_calls(inner, self._tools)
            if calls:
                out.extend(Call(c) for c in calls)
                held.drop(end + len(TOOL_CALL_CLOSE))
                self._state = "start"
            else:  # not a call after all: the tagged text is part of the answer
                piece = held.take(end + len(TOOL_CALL_CLOSE))
                out.extend(_texts(Text(TOOL_CALL_OPEN + piece.text, piece.logprobs)))
                self._state = "text"
            return True
        return False  # json: wait for the end

    def finish(self) -> list[Piece]:
        held = self._held
        if self._state == "call":
            # models often end with EOS instead of the closing tag
            calls = parse_calls(held.text, self._tools)
            if calls:
                held.take()
                return [Call(c) for c in calls]
            piece = held.take()
            return _texts(Text(TOOL_CALL_OPEN + piece.text, piece.logprobs))
        if self._state == "json":
            calls = parse_calls(held.text, self._tools)
            if calls:
                held.take()
                return [Call(c) for c in calls]
        if self._state == "start" and not held.text.strip():
            held.take()
            return []
        return _texts(held.take())


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0
