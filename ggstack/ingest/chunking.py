"""Token-window chunking, as OpenAI's vector stores do it.

Windows of `max_chunk_size_tokens` tokens, each starting `max - overlap` tokens after the
previous one, counted in the embedding model's own tokens so a chunk always fits the
model. "auto" means 800 tokens with 400 overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ggstack.errors import InvalidRequest

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
    """InvalidRequest naming the offending chunking_strategy parameter."""
    if not MIN_CHUNK_SIZE_TOKENS <= max_chunk_size_tokens <= MAX_CHUNK_SIZE_TOKENS:
        raise InvalidRequest(
            f"max_chunk_size_tokens must be between {MIN_CHUNK_SIZE_TOKENS} and "
            f"{MAX_CHUNK_SIZE_TOKENS}, not {max_chunk_size_tokens}",
            param=f"{STATIC}.max_chunk_size_tokens")
    if chunk_overlap_tokens < 0 or chunk_overlap_tokens > max_chunk_size_tokens // 2:
        raise InvalidRequest(
            f"chunk_overlap_tokens must be between 0 and half of max_chunk_size_tokens "
            f"({max_chunk_size_tokens // 2}), not {chunk_overlap_tokens}",
            param=f"{STATIC}.chunk_overlap_tokens")


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
        raise InvalidRequest("chunking_strategy.type must be 'auto' or 'static'",
                             param="chunking_strategy.type")
    static = strategy.get("static")
    if not isinstance(static, Mapping):
        raise InvalidRequest("chunking_strategy.static is required for a static strategy", param=STATIC)
    size = static.get("max_chunk_size_tokens", DEFAULT_MAX_CHUNK_SIZE_TOKENS)
    overlap = static.get("chunk_overlap_tokens", DEFAULT_CHUNK_OVERLAP_TOKENS)
    for name, value in (("max_chunk_size_tokens", size), ("chunk_overlap_tokens", overlap)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{name} must be an integer", param=f"{STATIC}.{name}")
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
