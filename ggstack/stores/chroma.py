"""`VectorStore` on ChromaDB, embedded (PersistentClient) or a server (HttpClient).

One cosine-space collection per vector store. Collections are created and opened with
`embedding_function=None` and every write and query carries our own embeddings: Chroma's
default embedding function would download a model the first time it is used.

Chunk metadata is the file's attributes plus two reserved keys (RESERVED_FILE,
RESERVED_INDEX). Every chromadb call runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio.to_thread
import chromadb
from chromadb.api import ClientAPI
from chromadb.api.client import Client
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Include
from chromadb.config import Settings
from chromadb.errors import NotFoundError as ChromaNotFound

from ggstack.core.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from ggstack.stores import bm25
from ggstack.stores.activity import SearchActivity
from ggstack.stores.base import Chunk, Filters, Hit, Ranker, Scalar
from ggstack.stores.filters import to_chroma_where, valid_key
from ggstack.stores.keywords import IndexedChunk, KeywordIndex

log = logging.getLogger("ggstack.stores.chroma")

T = TypeVar("T")

RESERVED_FILE = "_ggs_file_id"
RESERVED_INDEX = "_ggs_index"
RESERVED_CHUNK_ID = "_ggs_chunk_id"
RESERVED_SOURCE = "_ggs_chunk"
META_STORE_ID = "ggstack_store_id"
META_DIMENSION = "ggstack_dimension"

#: How many keyword candidates are fetched and scored at most, per query (regex scan only).
KEYWORD_CANDIDATES = 1000
#: Chunks read from Chroma per page while a keyword index is rebuilt.
REINDEX_PAGE = 2000


def collection_name(store_id: str) -> str:
    """A valid, injective Chroma name: 3-512 chars of [a-zA-Z0-9._-], alphanumeric at both ends.

    The readable part helps someone browsing Chroma; the hash keeps distinct ids distinct
    after unsafe characters are replaced.
    """
    readable = re.sub(r"[^a-zA-Z0-9_-]", "-", store_id)[:48]
    digest = hashlib.sha256(store_id.encode("utf-8")).hexdigest()[:16]
    return f"ggs-{readable}-{digest}"


def chunk_metadata(chunk: Chunk) -> dict[str, Scalar]:
    meta: dict[str, Scalar] = {}
    for key, value in chunk.attributes.items():
        if value is None:
            continue
        if not valid_key(key):
            raise InvalidValueError(f"attribute name {key!r} may not start with '$' or '#' or hold control "
                                    "characters", field="attributes")
        if not isinstance(value, str | int | float | bool):
            raise InvalidValueError(f"attribute '{key}' must be a string, number or boolean",
                                    field="attributes")
        # Numbers are stored as floats: Chroma compares an int field with a float filter
        # value by truncating the value (n < 2.5 would miss n = 2), but a float field
        # compares exactly with ints and floats alike. `_chunk` turns whole ones back.
        meta[key] = float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    # Written last so an attribute can never shadow them.
    meta[RESERVED_FILE] = chunk.file_id
    meta[RESERVED_INDEX] = chunk.index
    if chunk.chunk_id is not None:
        meta[RESERVED_CHUNK_ID] = chunk.chunk_id
    if chunk.source is not None:
        meta[RESERVED_SOURCE] = chunk.source
    return meta


def _chunk(text: str | None, meta: Mapping[str, Any] | None, embedding: Any = None) -> Chunk:
    meta = {key: int(value) if isinstance(value, float) and value.is_integer() else value
            for key, value in (meta or {}).items()}
    file_id = str(meta.pop(RESERVED_FILE, ""))
    index = int(meta.pop(RESERVED_INDEX, 0))
    chunk_id, source = meta.pop(RESERVED_CHUNK_ID, None), meta.pop(RESERVED_SOURCE, None)
    vector = [float(x) for x in embedding] if embedding is not None else None
    return Chunk(file_id=file_id, index=index, text=text or "", embedding=vector, attributes=meta,
                 chunk_id=chunk_id, source=source)


def _rows(got: Mapping[str, Any], *columns: str, query: int | None = None) -> Iterator[tuple[Any, ...]]:
    """Chroma's columnar result (of one `query` embedding, for a query's) as rows. Its types make
    every column but `ids` optional; a column the call's `include` asked for is always there."""
    lists = (got[column] if query is None else got[column][query] for column in columns)
    return zip(*lists, strict=True)


def _replacing(collection: Collection, ids: list[str], metadatas: list[dict[str, Scalar]],
               ) -> list[Mapping[str, Any]]:
    """Metadata that replaces what `ids` hold now: Chroma merges on upsert/update, and a key
    set to None is how a stale attribute gets removed."""
    existing = collection.get(ids=ids, include=["metadatas"])
    old_keys = {doc_id: set(meta or {}) for doc_id, meta in _rows(existing, "ids", "metadatas")}
    out: list[Mapping[str, Any]] = []
    for doc_id, meta in zip(ids, metadatas):
        stale = old_keys.get(doc_id, set()) - set(meta)
        out.append({**meta, **dict.fromkeys(stale)})
    return out


class ChromaVectorStore:
    """Build with `embedded(path)` or `server(url)`; `close()` when done."""

    def __init__(self, client: ClientAPI, keywords: KeywordIndex | None = None) -> None:
        self._client = client
        # Without an index (a bare store in a test), keyword search scans with regexes.
        self._keywords = keywords
        # Collection handles, so a query costs one round trip to a server, not two.
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()
        self._batch_size: int | None = None
        #: Searches running now: the background warm-up steps aside for them.
        self.activity = SearchActivity()

    @classmethod
    def embedded(cls, path: str | Any, keywords: KeywordIndex | None = None) -> ChromaVectorStore:
        settings = Settings(anonymized_telemetry=False)
        return cls(chromadb.PersistentClient(path=str(path), settings=settings), keywords)

    @classmethod
    def server(cls, url: str, keywords: KeywordIndex | None = None) -> ChromaVectorStore:
        """`url` like http://localhost:8000 (https for TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"chroma_url must look like http://host:port, not {url!r}")
        ssl = parts.scheme == "https"
        port = parts.port or (443 if ssl else 8000)
        settings = Settings(anonymized_telemetry=False)
        return cls(chromadb.HttpClient(host=parts.hostname, port=port, ssl=ssl, settings=settings), keywords)

    def close(self) -> None:
        if isinstance(self._client, Client):  # the factory functions' type is the ABC, which has no close()
            self._client.close()

    async def ping(self) -> None:
        """Raise if Chroma (embedded or a server) does not answer its heartbeat (health)."""
        await anyio.to_thread.run_sync(self._client.heartbeat, abandon_on_cancel=True)

    # -- plumbing -------------------------------------------------------------------------

    async def _search(self, store_id: str, fn: Callable[..., T], *args: Any) -> T:
        """`_run` for a search, counted as running (`activity`) from call to answer."""
        with self.activity.searching():
            return await self._run(store_id, fn, *args)

    async def _run(self, store_id: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(partial(fn, *args))
        except ChromaNotFound:
            # Dropped (maybe by another process) since we cached the handle.
            with self._lock:
                self._collections.pop(store_id, None)
            raise NotFoundError(f"vector store {store_id} has no index", kind="vector store", identifier=store_id) from None

    def _collection(self, store_id: str) -> Collection:
        with self._lock:
            cached = self._collections.get(store_id)
        if cached is not None:
            return cached
        collection = self._client.get_collection(collection_name(store_id), embedding_function=None)
        with self._lock:
            self._collections[store_id] = collection
        return collection

    @staticmethod
    def _check_dimension(collection: Collection, vector: Sequence[float], param: str) -> list[float]:
        expected = (collection.metadata or {}).get(META_DIMENSION)
        if expected is not None and len(vector) != expected:
            raise InvalidValueError(f"embedding has {len(vector)} dimensions; this vector store "
                                    f"holds {expected}-dimensional embeddings", field=param)
        return [float(x) for x in vector]

    @staticmethod
    def _check_k(k: int) -> None:
        if k < 1:
            raise InvalidValueError("max_num_results must be at least 1", field="max_num_results")

    # -- lifecycle ------------------------------------------------------------------------

    async def create(self, store_id: str, *, dimension: int,
                     metadata: Mapping[str, Scalar] | None = None) -> None:
        if dimension < 1:
            raise InvalidValueError("embedding dimension must be positive", field="embedding_dimension")
        meta: dict[str, Scalar] = {k: v for k, v in (metadata or {}).items() if v is not None}
        meta.update({META_STORE_ID: store_id, META_DIMENSION: dimension})

        def work() -> None:
            collection = self._client.get_or_create_collection(
                collection_name(store_id), configuration={"hnsw": {"space": "cosine"}},
                metadata=meta, embedding_function=None)
            existing = (collection.metadata or {}).get(META_DIMENSION)
            if existing != dimension:
                raise AlreadyExistsError(f"vector store {store_id} exists with dimension {existing}, "
                                         f"not {dimension}")
            with self._lock:
                self._collections[store_id] = collection

        await self._run(store_id, work)

    async def drop(self, store_id: str) -> bool:
        def work() -> bool:
            with self._lock:
                self._collections.pop(store_id, None)
            if self._keywords is not None:
                self._keywords.drop(store_id)
            try:
                self._client.delete_collection(collection_name(store_id))
            except ChromaNotFound:
                return False
            return True

        return await self._run(store_id, work)

    async def exists(self, store_id: str) -> bool:
        try:
            await self._run(store_id, self._collection, store_id)
        except NotFoundError:
            return False
        return True

    async def count(self, store_id: str) -> int:
        return await self._run(store_id, lambda: self._collection(store_id).count())

    # -- chunks ---------------------------------------------------------------------------

    async def upsert_chunks(self, store_id: str, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            return
        metadatas = [chunk_metadata(c) for c in chunks]

        def work() -> None:
            collection = self._collection(store_id)
            embeddings: list[Sequence[float]] = []
            for chunk in chunks:
                if chunk.embedding is None:
                    raise ValueError(f"chunk {chunk.id} has no embedding")
                embeddings.append(self._check_dimension(collection, chunk.embedding, "embedding"))
            if self._batch_size is None:
                self._batch_size = self._client.get_max_batch_size()
            step = self._batch_size
            for start in range(0, len(chunks), step):
                part = slice(start, start + step)
                ids = [c.id for c in chunks[part]]
                collection.upsert(ids=ids, embeddings=embeddings[part], documents=[c.text for c in chunks[part]],
                                  metadatas=_replacing(collection, ids, metadatas[part]))
            if self._keywords is not None:
                self._keywords.upsert(store_id, [IndexedChunk(c.id, c.file_id, c.text) for c in chunks])

        await self._run(store_id, work)

    async def set_file_attributes(self, store_id: str, file_id: str,
                                  attributes: Mapping[str, Scalar]) -> None:
        def work() -> None:
            collection = self._collection(store_id)
            got = collection.get(where={RESERVED_FILE: file_id}, include=["metadatas"])
            if not got["ids"]:
                return
            metas = [chunk_metadata(Chunk(file_id, int(meta[RESERVED_INDEX]), "", attributes=dict(attributes)))
                     for _, meta in _rows(got, "ids", "metadatas")]
            collection.update(ids=got["ids"], metadatas=_replacing(collection, got["ids"], metas))

        await self._run(store_id, work)

    async def delete_file(self, store_id: str, file_id: str) -> None:
        def work() -> None:
            self._collection(store_id).delete(where={RESERVED_FILE: file_id})
            if self._keywords is not None:
                self._keywords.delete_file(store_id, file_id)

        await self._run(store_id, work)

    async def file_chunks(self, store_id: str, file_id: str, *,
                          with_embeddings: bool = False) -> list[Chunk]:
        include: Include = ["documents", "metadatas"]
        if with_embeddings:
            include.append("embeddings")

        def work() -> list[Chunk]:
            got = self._collection(store_id).get(where={RESERVED_FILE: file_id}, include=include)
            rows = _rows(got, "documents", "metadatas", *(["embeddings"] if with_embeddings else []))
            chunks = [_chunk(*row) for row in rows]
            return sorted(chunks, key=lambda c: c.index)

        return await self._run(store_id, work)

    # -- search ---------------------------------------------------------------------------

    async def query(self, store_id: str, embedding: Sequence[float], *, k: int = 10,
                    where: Filters | None = None) -> list[Hit]:
        self._check_k(k)
        chroma_where = to_chroma_where(where)

        def work() -> list[Hit]:
            collection = self._collection(store_id)
            vector = self._check_dimension(collection, embedding, "embedding")
            queries: list[Sequence[float] | Sequence[int]] = [vector]
            got = collection.query(query_embeddings=queries, n_results=k, where=chroma_where,
                                   include=["documents", "metadatas", "distances"])
            rows = _rows(got, "documents", "metadatas", "distances", query=0)
            return [Hit(_chunk(text, meta), min(1.0, max(0.0, 1.0 - float(distance))))
                    for text, meta, distance in rows]

        return await self._search(store_id, work)

    async def keyword(self, store_id: str, text: str, *, k: int = 10,
                      where: Filters | None = None) -> list[Hit]:
        self._check_k(k)
        chroma_where = to_chroma_where(where)
        terms = bm25.query_terms(text)
        if not terms:
            return []
        if self._keywords is not None:
            return await self._search(store_id, self._indexed_keyword_sync, store_id, terms, k, chroma_where)
        return await self._search(store_id, self._keyword_sync, store_id, terms, k, chroma_where)

    def _indexed_keyword_sync(self, store_id: str, terms: list[str], k: int,
                              where: dict[str, Any] | None) -> list[Hit]:
        collection = self._collection(store_id)
        return self._hits(collection, self._indexed_keyword_ids(store_id, collection, terms, k, where))

    def _indexed_keyword_ids(self, store_id: str, collection: Collection, terms: list[str], k: int,
                             where: dict[str, Any] | None) -> list[tuple[str, float]]:
        """(chunk id, score in [0, 1)) of the `k` best by BM25, from the index alone."""
        assert self._keywords is not None
        if not self._keywords.indexed(store_id):
            self._reindex(store_id, collection)
        # A filter lives in Chroma's metadata: it names the chunks the index may rank.
        allowed = None if where is None else collection.get(where=where, include=[])["ids"]
        return [(s.chunk_id, s.bm25 / (1.0 + s.bm25)) for s in self._keywords.search(store_id, terms, k, allowed)]

    @staticmethod
    def _hits(collection: Collection, ranked: Sequence[tuple[str, float]]) -> list[Hit]:
        """The chunks of ranked (id, score) pairs, in order, read from Chroma in one call
        (an id deleted meanwhile is left out)."""
        if not ranked:
            return []
        got = collection.get(ids=[chunk_id for chunk_id, _ in ranked], include=["documents", "metadatas"])
        found = {doc_id: _chunk(text, meta) for doc_id, text, meta in _rows(got, "ids", "documents", "metadatas")}
        return [Hit(found[chunk_id], score) for chunk_id, score in ranked if chunk_id in found]

    def _reindex(self, store_id: str, collection: Collection) -> None:
        """Index every chunk Chroma holds for a store that has none (see ggstack.stores.keywords)."""
        assert self._keywords is not None
        total = collection.count()
        log.info("building the keyword index of vector store %s (%d chunks)", store_id, total)
        step = REINDEX_PAGE
        for offset in range(0, max(total, 1), step):
            got = collection.get(include=["documents", "metadatas"], limit=step, offset=offset)
            self._keywords.upsert(store_id, [IndexedChunk(doc_id, str((meta or {}).get(RESERVED_FILE, "")), text or "")
                                             for doc_id, text, meta in _rows(got, "ids", "documents", "metadatas")])

    def _keyword_sync(self, store_id: str, terms: list[str], k: int,
                      where: dict[str, Any] | None) -> list[Hit]:
        collection = self._collection(store_id)
        postings: dict[str, list[str]] = {}
        for term in terms:
            got = collection.get(where=where, where_document={"$regex": bm25.term_pattern(term)},
                                 include=[])
            if got["ids"]:
                postings[term] = got["ids"]
        if not postings:
            return []
        # Document frequencies are exact (over the filtered set); the average chunk
        # length is taken from the candidates, which is close enough for ranking.
        n_docs = collection.count() if where is None else len(collection.get(where=where, include=[])["ids"])
        idfs = {term: bm25.idf(n_docs, len(ids)) for term, ids in postings.items()}
        candidates = bm25.shortlist(postings, idfs, KEYWORD_CANDIDATES)
        got = collection.get(ids=candidates, include=["documents", "metadatas"])
        docs = {doc_id: text for doc_id, text in _rows(got, "ids", "documents")}
        metas = {doc_id: meta for doc_id, meta in _rows(got, "ids", "metadatas")}
        ranked = bm25.rank(docs, idfs)[:k]
        return [Hit(_chunk(docs[doc_id], metas[doc_id]), s / (1.0 + s)) for doc_id, s in ranked]

    async def warm_index(self, store_id: str) -> None:
        """Load Chroma's vector index of a store (0.5-1.2 s at 100k chunks, paid by the first
        query of the store in this process otherwise)."""
        def work() -> None:
            collection = self._collection(store_id)
            # Any query loads the index; a stored vector is the one probe of the right dimension.
            stored = collection.get(limit=1, include=["embeddings"])["embeddings"]
            if stored is not None and len(stored):
                probe: list[Sequence[float] | Sequence[int]] = [[float(x) for x in stored[0]]]
                collection.query(query_embeddings=probe, n_results=1, include=[])

        await self._run(store_id, work)

    async def warm_keywords(self, store_id: str, *, postings_bytes: int) -> int:
        """With a keyword index, read up to `postings_bytes` of the store's postings (building the
        index first if the store has chunks but no index, as the first keyword search would),
        one term at a time in quiet moments between searches (ggstack.stores.activity). The
        bytes of postings cached."""
        def work() -> int:
            if self._keywords is None:
                return 0
            if not self._keywords.indexed(store_id):
                self._reindex(store_id, self._collection(store_id))
            return self._keywords.warm(store_id, postings_bytes, pause=self.activity.pace)

        return await self._run(store_id, work)

    async def hybrid(self, store_id: str, embedding: Sequence[float], text: str, *, k: int = 10,
                     where: Filters | None = None, ranker: Ranker = "rrf",
                     impact_factor: float = 60.0, alpha: float = 0.5) -> list[Hit]:
        self._check_k(k)
        if ranker not in ("rrf", "weighted"):
            raise InvalidValueError(f"ranker must be 'rrf' or 'weighted', not {ranker!r}", field="ranker")
        if not 0.0 <= alpha <= 1.0:
            raise InvalidValueError("alpha must be between 0 and 1", field="alpha")
        if impact_factor <= 0:
            raise InvalidValueError("impact_factor must be positive", field="impact_factor")
        depth = max(3 * k, 20)
        chroma_where = to_chroma_where(where)
        terms = bm25.query_terms(text)

        def work() -> list[Hit]:
            """Both rankings by id alone, fused; only the `k` chunks that survive are read
            (reading 2 x `depth` chunks' texts and metadata was most of a hybrid query)."""
            collection = self._collection(store_id)
            queries: list[Sequence[float] | Sequence[int]] = [self._check_dimension(collection, embedding, "embedding")]
            got = collection.query(query_embeddings=queries, n_results=depth, where=chroma_where, include=["distances"])
            by_vector = [(doc_id, min(1.0, max(0.0, 1.0 - float(distance))))
                         for doc_id, distance in _rows(got, "ids", "distances", query=0)]
            if not terms:
                by_keyword = []
            elif self._keywords is not None:
                by_keyword = self._indexed_keyword_ids(store_id, collection, terms, depth, chroma_where)
            else:
                by_keyword = [(hit.chunk.id, hit.score)
                              for hit in self._keyword_sync(store_id, terms, depth, chroma_where)]
            fused = fuse(by_vector, by_keyword, k=k, ranker=ranker, impact_factor=impact_factor, alpha=alpha)
            return self._hits(collection, fused)

        return await self._search(store_id, work)


Ranked = Sequence[tuple[str, float]]


def fuse(by_vector: Ranked, by_keyword: Ranked, *, k: int, ranker: Ranker, impact_factor: float,
         alpha: float) -> list[tuple[str, float]]:
    """Combine two rankings of (chunk id, score), best first (see `VectorStore.hybrid` for the
    formulas); the `k` best (chunk id, fused score in [0, 1])."""
    scores: dict[str, float] = {}
    if ranker == "rrf":
        for ranking in (by_vector, by_keyword):
            for rank, (chunk_id, _) in enumerate(ranking, start=1):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (impact_factor + rank)
        best = 2.0 / (impact_factor + 1.0)
        scores = {cid: s / best for cid, s in scores.items()}
    else:
        top_keyword = max((score for _, score in by_keyword), default=0.0)
        for chunk_id, score in by_vector:
            scores[chunk_id] = alpha * score
        for chunk_id, score in by_keyword:
            normalised = score / top_keyword if top_keyword > 0 else 0.0
            scores[chunk_id] = scores.get(chunk_id, 0.0) + (1.0 - alpha) * normalised
    ordered = sorted(scores, key=lambda cid: (-scores[cid], cid))[:k]
    return [(cid, min(1.0, scores[cid])) for cid in ordered]
