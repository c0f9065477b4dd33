"""Token-window chunking, as OpenAI's vector stores do it.

Windows of `max_chunk_size_tokens` tokens, each starting `max - overlap` tokens after the
previous one, counted in the embedding model's own tokens so a chunk always fits the
model. "auto" means 800 tokens with 400 overlap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ggstack.core.errors import InvalidValueError

T = TypeVar("T")

DEFAULT_MAX_CHUNK_SIZE_TOKENS = 800
DEFAULT_CHUNK_OVERLAP_TOKENS = 400
MIN_CHUNK_SIZE_TOKENS = 100
MAX_CHUNK_SIZE_TOKENS = 4096

STATIC = "chunking_strategy.static"


@dataclass(frozen=True)
class TextChunk:
    """One window: its text, and where it starts in the document's tokens."""

    text: str
    start_token: int
    n_tokens: int


def validate_sizes(max_chunk_size_tokens: int, chunk_overlap_tokens: int) -> None:
    """InvalidValueError naming the offending chunking_strategy parameter."""
    if not MIN_CHUNK_SIZE_TOKENS <= max_chunk_size_tokens <= MAX_CHUNK_SIZE_TOKENS:
        raise InvalidValueError(
            f"max_chunk_size_tokens must be between {MIN_CHUNK_SIZE_TOKENS} and "
            f"{MAX_CHUNK_SIZE_TOKENS}, not {max_chunk_size_tokens}",
            field=f"{STATIC}.max_chunk_size_tokens")
    if chunk_overlap_tokens < 0 or chunk_overlap_tokens > max_chunk_size_tokens // 2:
        raise InvalidValueError(
            f"chunk_overlap_tokens must be between 0 and half of max_chunk_size_tokens "
            f"({max_chunk_size_tokens // 2}), not {chunk_overlap_tokens}",
            field=f"{STATIC}.chunk_overlap_tokens")


def chunking_params(strategy: Any) -> tuple[int, int]:
    """(max_chunk_size_tokens, chunk_overlap_tokens) from an OpenAI `chunking_strategy`.

    None or {"type": "auto"} gives the defaults; {"type": "static", "static": {...}} is
    validated. A generated pydantic model is accepted as well as a dict.
    """
    dump = getattr(strategy, "model_dump", None)
    if callable(dump):
        strategy = dump(exclude_none=True)
    if strategy is None or (isinstance(strategy, Mapping) and strategy.get("type", "auto") == "auto"):
        return DEFAULT_MAX_CHUNK_SIZE_TOKENS, DEFAULT_CHUNK_OVERLAP_TOKENS
    if not isinstance(strategy, Mapping) or strategy.get("type") != "static":
        raise InvalidValueError("chunking_strategy.type must be 'auto' or 'static'",
                                field="chunking_strategy.type")
    static = strategy.get("static")
    if not isinstance(static, Mapping):
        raise InvalidValueError("chunking_strategy.static is required for a static strategy", field=STATIC)
    size = static.get("max_chunk_size_tokens", DEFAULT_MAX_CHUNK_SIZE_TOKENS)
    overlap = static.get("chunk_overlap_tokens", DEFAULT_CHUNK_OVERLAP_TOKENS)
    for name, value in (("max_chunk_size_tokens", size), ("chunk_overlap_tokens", overlap)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValueError(f"{name} must be an integer", field=f"{STATIC}.{name}")
    validate_sizes(size, overlap)
    return size, overlap


def chunk_tokens(tokens: Sequence[T], max_chunk_size_tokens: int = DEFAULT_MAX_CHUNK_SIZE_TOKENS,
                 chunk_overlap_tokens: int = DEFAULT_CHUNK_OVERLAP_TOKENS) -> list[Sequence[T]]:
    """Overlapping windows over `tokens`; the last one ends at the last token. [] for []."""
    validate_sizes(max_chunk_size_tokens, chunk_overlap_tokens)
    step = max_chunk_size_tokens - chunk_overlap_tokens
    windows: list[Sequence[T]] = []
    for start in range(0, len(tokens), step):
        windows.append(tokens[start:start + max_chunk_size_tokens])
        if start + max_chunk_size_tokens >= len(tokens):
            break
    return windows


def chunk_text(text: str, *, tokenize: Callable[[str], Sequence[int]],
               detokenize: Callable[[Sequence[int]], str],
               max_chunk_size_tokens: int = DEFAULT_MAX_CHUNK_SIZE_TOKENS,
               chunk_overlap_tokens: int = DEFAULT_CHUNK_OVERLAP_TOKENS) -> list[TextChunk]:
    """Chunk with the embedding model's tokenizer; whitespace-only windows are dropped.

    Blocking when the tokenizer is (a llama.cpp model): run it in the model's worker or a thread.
    """
    validate_sizes(max_chunk_size_tokens, chunk_overlap_tokens)
    tokens = list(tokenize(text))
    step = max_chunk_size_tokens - chunk_overlap_tokens
    chunks = []
    for i, window in enumerate(chunk_tokens(tokens, max_chunk_size_tokens, chunk_overlap_tokens)):
        piece = detokenize(window)
        if piece.strip():
            chunks.append(TextChunk(text=piece, start_token=i * step, n_tokens=len(window)))
    return chunks


# -- windows over the original text ------------------------------------------------------------

#: A run of non-space characters, the unit windows are built from. Longer runs (a URL, a
#: base64 blob) are cut into pieces of this many characters, so no unit can exceed a window.
MAX_UNIT_CHARS = 24
_UNIT = re.compile(r"\S+")


def text_units(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the words of `text`, long words cut into pieces."""
    spans: list[tuple[int, int]] = []
    for match in _UNIT.finditer(text):
        start, end = match.span()
        spans.extend((at, min(at + MAX_UNIT_CHARS, end)) for at in range(start, end, MAX_UNIT_CHARS))
    return spans


def chunk_units(text: str, spans: Sequence[tuple[int, int]], counts: Sequence[int], *,
                max_chunk_size_tokens: int, chunk_overlap_tokens: int) -> list[TextChunk]:
    """Token windows made of whole units, each chunk a slice of the original `text`.

    `counts[i]` is how many tokens unit i is. Unlike `chunk_text`, the chunk text is never
    detokenized, so case, accents and spacing survive (an uncased tokenizer would lose them).
    A window holds at most `max_chunk_size_tokens` (a single larger unit stands alone) and
    the next one starts at the first unit of the last <= `chunk_overlap_tokens` of it.
    """
    if max_chunk_size_tokens < 1 or not 0 <= chunk_overlap_tokens < max_chunk_size_tokens:
        raise ValueError("need 0 <= overlap < max_chunk_size_tokens")
    if len(spans) != len(counts):
        raise ValueError("one token count per unit")
    starts = [0]
    for n in counts:
        starts.append(starts[-1] + n)
    chunks: list[TextChunk] = []
    first = 0
    while first < len(spans):
        last = first + 1
        while last < len(spans) and starts[last + 1] - starts[first] <= max_chunk_size_tokens:
            last += 1
        chunks.append(TextChunk(text=text[spans[first][0]:spans[last - 1][1]], start_token=starts[first],
                                n_tokens=starts[last] - starts[first]))
        if last == len(spans):
            break
        following = last
        while following - 1 > first and starts[last] - starts[following - 1] <= chunk_overlap_tokens:
            following -= 1
        first = following
    return chunks
