"""The store Protocols handlers call, and the small values they pass around.

Three stores, each behind a Protocol so the factory can pick a backend from config:

- `MetadataStore`: JSON documents by (kind, id), optionally under a parent, with
  OpenAI-style cursor pages. Every resource the server keeps lives here.
- `FileStore`: uploaded bytes on disk under generated keys.
- `VectorStore`: chunk embeddings in ChromaDB, one collection per vector store.

All methods are async; implementations push blocking I/O to a worker thread.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

#: A file attribute / chunk metadata value as Chroma can store it.
Scalar = str | int | float | bool

#: `where` for `MetadataStore.list`/`count`: top-level JSON key -> value. A list/tuple
#: value means "one of these", None means "missing or null".
Where = Mapping[str, Any]

#: An update: a dict to merge shallowly into the document, or a function that gets a
#: copy of the document and returns the new one (or mutates it and returns None).
Update = Mapping[str, Any] | Callable[[dict[str, Any]], dict[str, Any] | None]

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class Condition:
    """`field op value` on a document, compared as Python compares parsed JSON, except that
    values of different JSON types are never equal or ordered (`ne` is always `not eq`)."""

    key: str
    op: Literal["eq", "ne", "gt", "lt"]
    value: Any


@dataclass(frozen=True)
class Page:
    """One page of a list, in the shape OpenAI list objects need."""

    items: list[dict[str, Any]]
    has_more: bool
    first_id: str | None
    last_id: str | None


class MetadataStore(Protocol):
    """A JSON-document store over SQL.

    A document is addressed by `kind` (e.g. "file", "vector_store_file") and `id`, plus
    `parent` for kinds whose ids repeat across parents (one file in two vector stores).
    `parent=None` is its own namespace. Lists are ordered by (created_at, insertion order):
    ids are random, so insertion order is the only stable tie-break within one second.
    """

    async def put(self, kind: str, id: str, data: Mapping[str, Any], *, parent: str | None = None,
                  created_at: int | None = None) -> None:
        """Insert or replace. `created_at` defaults to data's "created_at"/"created", else now;
        a replace keeps the original created_at unless one is given."""

    async def put_many(self, kind: str, docs: Sequence[tuple[str, Mapping[str, Any]]], *,
                       parent: str | None = None, created_at: int | None = None) -> None:
        """`put` each (id, data) in one transaction; list order follows `docs` order."""

    async def put_json(self, kind: str, rows: Sequence[tuple[str, int, str]]) -> None:
        """`put_many` of top-level (id, created_at, document as JSON text) rows, written as given."""

    async def get(self, kind: str, id: str, *, parent: str | None = None) -> dict[str, Any] | None:
        """The document, or None."""

    async def get_many(self, kind: str, ids: Sequence[str], *,
                       parent: str | None = None) -> dict[str, dict[str, Any]]:
        """The documents of those ids that exist, by id, in one read (a search's ten hits named
        their files in ten queries, 3-4 ms of a 20 ms search)."""

    async def delete(self, kind: str, id: str, *, parent: str | None = None) -> bool:
        """True when something was deleted."""

    async def delete_many(self, kind: str, ids: Sequence[str], *, parent: str | None = None) -> int:
        """Delete these documents in one transaction; returns how many there were."""

    async def delete_oldest(self, kind: str, keep: int) -> int:
        """Delete all but the newest `keep` top-level documents of `kind`; returns how many went."""

    async def delete_children(self, kind: str, parent: str) -> int:
        """Delete every `kind` document under `parent`; returns how many."""

    async def update(self, kind: str, id: str, change: Update, *, parent: str | None = None,
                     skip_locked: bool = False) -> dict[str, Any] | None:
        """Atomically read-modify-write; concurrent updates are serialised, none is lost.

        Returns the new document, or None when it does not exist (with `skip_locked`, also
        when another process is changing it right now). An exception raised by a `change`
        function aborts the update and propagates (use it for AlreadyExistsError checks).
        """

    async def list(self, kind: str, *, parent: str | None = None, after: str | None = None,
                   before: str | None = None, limit: int | None = 20, order: Order = "desc",
                   where: Where | None = None, offset: int = 0) -> Page:
        """A page in `order`; `after`/`before` are ids of the same list (UnknownIdError if not).

        `offset` skips that many items first (in SQL, for position-addressed reads like dataset rows).

        `has_more` says whether more items lie beyond the page in the direction of travel.
        `limit=None` returns everything (for internal sweeps, not for clients).
        """

    async def find(self, kind: str, *, conditions: Sequence[Condition] = (), under: str | None = None,
                   order_by: Sequence[str] = (), first_per: str | None = None,
                   created: tuple[int | None, int | None] = (None, None), offset: int = 0,
                   limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """Top-level documents meeting every condition, filtered, ordered and paged by the database.

        A key is read from the nested object `under` when that holds it, else from the top level
        (spans: an attribute, else a span field). `order_by` keys (`-key` descending) sort by the
        field as text, then list order (oldest first); `first_per` keeps only the first document,
        in list order, of each value of that top-level key; `created` bounds created_at
        (inclusive seconds).
        """

    def scan(self, kind: str, *, conditions: Sequence[Condition] = (), under: str | None = None,
             created: tuple[int | None, int | None] = (None, None),
             batch: int = 500) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """Every match of `find`, oldest first, `batch` at a time: each batch is one keyset-paged
        query, so a sweep over any number of documents holds one batch in memory."""

    async def ping(self) -> None:
        """Raise if the database does not answer (health checks)."""

    async def count(self, kind: str, *, parent: str | None = None, where: Where | None = None) -> int:
        """How many documents match."""

    async def count_by(self, kind: str, field: str, *, parent: str | None = None) -> dict[Any, int]:
        """Counts grouped by a top-level key's value (None for missing), computed by query."""


@dataclass(frozen=True)
class StoredBlob:
    """What `FileStore.save` wrote: its key, byte size and SHA-256 hex digest."""

    key: str
    size: int
    sha256: str


class FileStore(Protocol):
    """Uploaded bytes under generated keys; the client's filename is never a path."""

    async def save(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> StoredBlob:
        """Stream to disk atomically. Over `max_bytes` -> TooLargeError, nothing left behind."""

    async def read(self, key: str) -> bytes:
        """The whole blob (NotFoundError if missing). Prefer `stream` for responses."""

    def stream(self, key: str, *, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """The blob in chunks (NotFoundError on first iteration if missing)."""

    def path(self, key: str) -> Any:
        """Where the blob lives on disk (a pathlib.Path); the key is validated first."""

    async def delete(self, key: str) -> bool:
        """True when a blob was removed."""


@dataclass(frozen=True)
class Chunk:
    """One piece of one file in one vector store.

    `attributes` are the file's attributes copied onto the chunk so search filters can
    see them. `embedding` is required by `upsert_chunks`; reads fill it only on request.
    """

    file_id: str
    index: int
    text: str
    embedding: Sequence[float] | None = None
    attributes: dict[str, Scalar] = field(default_factory=dict)
    #: A chunk a client inserted itself (vector-io) has the client's id and its whole chunk
    #: as JSON (content, metadata of any shape, chunk_metadata); a file's chunks have neither.
    chunk_id: str | None = None
    source: str | None = None

    @property
    def id(self) -> str:
        """Deterministic, so re-ingesting a file after a crash overwrites instead of duplicating."""
        return self.chunk_id or f"{self.file_id}:{self.index}"


@dataclass(frozen=True)
class Hit:
    """A search result; `score` is in [0, 1], higher is better."""

    chunk: Chunk
    score: float


#: OpenAI vector-store search `filters`: {"type": "eq", "key": ..., "value": ...} or
#: {"type": "and"|"or", "filters": [...]}; a pydantic model with model_dump() is accepted too.
Filters = Mapping[str, Any]

Ranker = Literal["rrf", "weighted"]


class VectorStore(Protocol):
    """Chunks and their embeddings, searchable by vector, keyword or both.

    Embeddings always come from our own models; the backend never embeds anything.
    An operation on a store that was never created raises NotFoundError.
    """

    async def ping(self) -> None:
        """Raise if the backend does not answer (health checks)."""

    async def create(self, store_id: str, *, dimension: int,
                     metadata: Mapping[str, Scalar] | None = None) -> None:
        """Create the store's index (idempotent; AlreadyExistsError if it exists with another dimension)."""

    async def drop(self, store_id: str) -> bool:
        """Remove the index and all chunks; False when there was none."""

    async def exists(self, store_id: str) -> bool:
        ...

    async def upsert_chunks(self, store_id: str, chunks: Sequence[Chunk]) -> None:
        """Insert or replace (text, embedding, attributes) by `Chunk.id`.

        Re-chunking a file into fewer chunks? `delete_file` first, or the extra old ones stay.
        """

    async def set_file_attributes(self, store_id: str, file_id: str,
                                  attributes: Mapping[str, Scalar]) -> None:
        """Replace the attributes on every chunk of one file (no re-embedding)."""

    async def delete_file(self, store_id: str, file_id: str) -> None:
        """Remove every chunk of one file."""

    async def file_chunks(self, store_id: str, file_id: str, *,
                          with_embeddings: bool = False) -> list[Chunk]:
        """A file's chunks in index order."""

    async def count(self, store_id: str) -> int:
        """Number of chunks in the store."""

    async def query(self, store_id: str, embedding: Sequence[float], *, k: int = 10,
                    where: Filters | None = None) -> list[Hit]:
        """Nearest chunks; score = 1 - cosine distance, clipped to [0, 1]."""

    async def keyword(self, store_id: str, text: str, *, k: int = 10,
                      where: Filters | None = None) -> list[Hit]:
        """BM25-ranked chunks containing query words; score = bm25 / (1 + bm25)."""

    async def hybrid(self, store_id: str, embedding: Sequence[float], text: str, *, k: int = 10,
                     where: Filters | None = None, ranker: Ranker = "rrf",
                     impact_factor: float = 60.0, alpha: float = 0.5) -> list[Hit]:
        """Vector and keyword results fused.

        "rrf": reciprocal-rank fusion, sum of 1/(impact_factor + rank), scaled so a chunk
        ranked first by both scores 1. "weighted": alpha * vector score +
        (1 - alpha) * keyword score normalised by the best keyword score.
        """

    async def warm_index(self, store_id: str) -> None:
        """Load the store's vector index before a search needs it (start-up warm-up,
        ggstack.search.warmup). Searches are correct whether or not it ran, or runs beside them."""

    async def warm_keywords(self, store_id: str, *, postings_bytes: int) -> int:
        """Read up to `postings_bytes` of the store's keyword postings before a search needs them,
        stepping aside for searches that run meanwhile; the bytes cached. Searches are correct
        whether or not it ran, or runs beside them."""
