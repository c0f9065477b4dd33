"""One file into one vector store: extract the text, chunk it, embed the chunks, store them.

Indexing is idempotent: chunk ids are `<file_id>:<index>` and a file's old chunks are
removed before the new ones are written, so running it again after a crash (or twice)
leaves exactly one copy of each chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ggstack.core.errors import BusyError, ContextOverflowError
from ggstack.engines.base import EmbeddingEngine
from ggstack.ingest.chunking import TextChunk, chunk_units, text_units
from ggstack.ingest.extract import extract
from ggstack.stores.base import Chunk, Scalar, VectorStore

log = logging.getLogger("ggstack.ingest.pipeline")

#: Chunks per embed call: small enough that a search's query embedding waits behind at
#: most one such call on the model's worker thread.
EMBED_BATCH = 16

#: Token-count lookups in flight at once while chunking (each one is a worker-thread hop).
COUNT_CONCURRENCY = 16

#: Special tokens an encoder adds around each input ([CLS] ... [SEP], or BOS/EOS).
SPECIAL_TOKENS = 2

#: Waits between retries when the embedding model's queue is full (seconds).
OVERLOAD_BACKOFF = (0.2, 0.5, 1, 2, 4, 8, 15, 30)


@dataclass(frozen=True)
class Indexed:
    """What indexing one file produced."""

    chunks: int
    usage_bytes: int


class EmbeddingBusy(BusyError):
    """The embedding model stayed overloaded through every retry."""


def window_sizes(engine: EmbeddingEngine, max_chunk_size_tokens: int,
                 chunk_overlap_tokens: int) -> tuple[int, int]:
    """The requested window, shrunk to what the model can embed in one input.

    "auto" asks for 800 tokens, but MiniLM reads 512; the overlap keeps its share.
    """
    limit = max(1, engine.context_length - SPECIAL_TOKENS)
    size = min(max_chunk_size_tokens, limit)
    overlap = min(chunk_overlap_tokens, size // 2)
    return size, overlap


async def count_tokens(engine: Any, words: Sequence[str]) -> dict[str, int]:
    """Token count of each distinct word, as the model tokenizes it (no special tokens)."""
    distinct = sorted(set(words))
    counts: dict[str, int] = {}
    limiter = asyncio.Semaphore(COUNT_CONCURRENCY)

    async def one(word: str) -> None:
        async with limiter:
            counts[word] = len(await engine.tokenize(word, add_bos=False, special=False))

    await asyncio.gather(*(one(word) for word in distinct))
    return counts


async def chunk_for(engine: Any, text: str, max_chunk_size_tokens: int,
                    chunk_overlap_tokens: int) -> list[TextChunk]:
    """Windows of `text` counted in `engine`'s tokens, each one a slice of the original text."""
    spans = text_units(text)
    if not spans:
        return []
    words = [text[start:end] for start, end in spans]
    counts = await count_tokens(engine, words)
    size, overlap = window_sizes(engine, max_chunk_size_tokens, chunk_overlap_tokens)
    return chunk_units(text, spans, [counts[w] for w in words], max_chunk_size_tokens=size,
                       chunk_overlap_tokens=overlap)


async def embed_texts(engine: Any, texts: list[str], *, retry_overloaded: bool = False) -> list[list[float]]:
    """Embeddings for `texts`; an input longer than the model reads is cut at its limit.

    With `retry_overloaded`, a full model queue is waited out (background work yields to
    requests); otherwise `BusyError` reaches the caller (a 429).
    """
    for delay in (*OVERLOAD_BACKOFF, None):
        try:
            vectors, _ = await engine.embed(texts)
            return vectors
        except BusyError:
            if not retry_overloaded:
                raise
            if delay is None:
                raise EmbeddingBusy("the embedding model stayed busy; try again later") from None
            await asyncio.sleep(delay)
        except ContextOverflowError:
            return await _embed_truncated(engine, texts)
    raise AssertionError("unreachable")


async def _embed_truncated(engine: Any, texts: list[str]) -> list[list[float]]:
    """Rare: a window re-tokenized longer than it was counted (tokenizers are not always
    additive over words). Cut it to the model's limit, keeping the closing special token."""
    limit = engine.context_length
    token_lists = []
    for text in texts:
        tokens = await engine.tokenize(text, add_bos=True, special=False)
        token_lists.append(tokens if len(tokens) <= limit else [*tokens[:limit - 1], tokens[-1]])
    vectors, _ = await engine.embed(token_lists)
    return vectors


async def index_file(*, data: bytes, content_type: str | None, filename: str | None, engine: Any,
                     vectors: VectorStore, store_id: str, file_id: str, attributes: Mapping[str, Scalar],
                     max_chunk_size_tokens: int, chunk_overlap_tokens: int) -> Indexed:
    """Replace `file_id`'s chunks in `store_id` with fresh ones.

    Raises ExtractionError for a file that cannot be read, EmbeddingBusy when the model
    stays overloaded, NotFoundError when the store's index is gone.
    """
    text = await extract(data, content_type=content_type, filename=filename)
    pieces = await chunk_for(engine, text, max_chunk_size_tokens, chunk_overlap_tokens)
    await vectors.delete_file(store_id, file_id)
    usage = 0
    for start in range(0, len(pieces), EMBED_BATCH):
        batch = pieces[start:start + EMBED_BATCH]
        embeddings = await embed_texts(engine, [p.text for p in batch], retry_overloaded=True)
        chunks = [Chunk(file_id=file_id, index=start + i, text=p.text, embedding=e, attributes=dict(attributes))
                  for i, (p, e) in enumerate(zip(batch, embeddings, strict=True))]
        await vectors.upsert_chunks(store_id, chunks)
        # What the store keeps per chunk: the text, and the embedding as float32.
        usage += sum(len(c.text.encode("utf-8")) + 4 * len(c.embedding or ()) for c in chunks)
    return Indexed(chunks=len(pieces), usage_bytes=usage)
