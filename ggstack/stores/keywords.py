"""An inverted index for keyword search, in SQL beside the metadata (SQLite or PostgreSQL).

Keyword search used to scan every chunk in Chroma with a regex per query term: 1.5-2.7 s at
100k chunks. Here a term's postings are packed arrays of (document number, term frequency,
document length) in a few segment rows per (store, term), and each store has one row of corpus
statistics. A query reads the segments of its terms and scores every matching document with
numpy, so its cost grows with the postings of the query's terms, not with the store.

Adding chunks appends one segment per term they hold; it never reads or rewrites the postings
already stored (rewriting every touched term's whole list made each batch cost more as the
store grew). Segments are merged as a binary counter merges carries: a new segment absorbs
the newest ones until an older one is larger than all of them together, so a term has at most
about log2(its postings / a batch's) segments and each posting is rewritten that many times
over the store's life. Taking chunks out (delete, or re-indexing a chunk id) rewrites the
terms they held as one segment each.

Why not SQLite FTS5 or PostgreSQL's tsvector: both rank with their own BM25 variants (FTS5's
idf drops to zero for a term in half the documents; ts_rank is not BM25), and both score
matches one row at a time. FTS5 took 0.7-1 s to rank a six-word query whose terms cover 97%
of 100k chunks (the vector-store bench's worst case). Postings arrays give the same answers
as the regex scan's BM25 (Lucene idf, k1 1.2, b 0.75, `bm25.words` tokens), with the exact
corpus statistics instead of the old estimate from the candidates, in a few milliseconds,
and the same code runs on both databases.

Chroma stays the store of the chunks themselves; this index is kept in step by
`ChromaVectorStore` on every upsert and delete, and is rebuilt from Chroma when a store has
chunks but no index (a database restored without it, or a store made before it existed).
All methods block; callers run them in worker threads.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from ggstack.stores import bm25
from ggstack.stores.sql import open_engine

#: One posting: the document's number, how often the term occurs in it, and its length in words.
POSTING = np.dtype([("doc", "<i8"), ("tf", "<i4"), ("length", "<i4")])
#: SQL IN lists are sent in pieces of this many values.
IN_BATCH = 500
#: Postings kept in memory between queries, at most (bytes, all stores together).
CACHE_BYTES = 256 * 1024 * 1024
#: What one cached posting costs: the posting and its BM25 weight (`TermPostings`).
CACHED_POSTING_BYTES = POSTING.itemsize + np.dtype(np.float64).itemsize

_metadata = MetaData()

keyword_docs = Table(
    "ggstack_keyword_docs",
    _metadata,
    Column("doc", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("store_id", String(255), nullable=False),
    Column("chunk_id", String(512), nullable=False),
    Column("file_id", String(255), nullable=False),
    Column("length", Integer, nullable=False),
    Column("terms", JSON, nullable=False),  # the distinct terms, to take the document out again
    Index("ux_ggstack_keyword_docs_chunk", "store_id", "chunk_id", unique=True),
    Index("ix_ggstack_keyword_docs_file", "store_id", "file_id"),
)

keyword_segments = Table(
    "ggstack_keyword_segments",
    _metadata,
    Column("store_id", String(255), primary_key=True),
    Column("term", String(255), primary_key=True),
    # The store version that wrote it (a merge keeps the oldest number it merged): unique
    # per term, and in the order the postings were added.
    Column("segment", BigInteger, primary_key=True, autoincrement=False),
    Column("size", Integer, nullable=False),  # postings in it: merging looks at sizes only
    Column("postings", LargeBinary, nullable=False),
)
#: Before segments: one row of all postings per (store, term). Moved into segments at open.
OLD_TERMS = "ggstack_keyword_terms"

keyword_stats = Table(
    "ggstack_keyword_stores",
    _metadata,
    Column("store_id", String(255), primary_key=True),
    Column("n_docs", BigInteger, nullable=False),
    Column("total_length", BigInteger, nullable=False),
    # Bumped by every write: a reader's cached postings of an older version are stale.
    Column("version", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class IndexedChunk:
    """What the index needs of a chunk."""

    chunk_id: str
    file_id: str
    text: str


@dataclass(frozen=True)
class Scored:
    chunk_id: str
    bm25: float


def batches(items: Sequence[Any], size: int = IN_BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def unpack(blob: bytes | None) -> np.ndarray:
    return np.frombuffer(blob, dtype=POSTING) if blob else np.empty(0, dtype=POSTING)


class KeywordIndex:
    """Build with `KeywordIndex.open(url)` (the metadata store's URL); `close()` when done."""

    def __init__(self, engine: Engine, *, cache_bytes: int = CACHE_BYTES) -> None:
        self._engine = engine
        self._insert = sqlite_insert if engine.dialect.name == "sqlite" else postgresql_insert
        self._cache = PostingsCache(cache_bytes)
        # Stores known to have an index: asked once, not before every query. Only drop() takes
        # an index away.
        self._known: set[str] = set()

    @classmethod
    def open(cls, url: str) -> KeywordIndex:
        engine = open_engine(url)
        _metadata.create_all(engine)
        _move_old_terms(engine)
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    # -- writes -----------------------------------------------------------------------------

    def _write(self, work: Any) -> Any:
        with self._engine.connect() as conn:
            conn.execution_options(ggstack_write=True)
            with conn.begin():
                return work(conn)

    def _lock_stats(self, conn: Connection, store_id: str) -> Any:
        """The store's statistics row, locked: writers of one store take turns (on PostgreSQL
        by the row lock; on SQLite every writer already holds the database's write lock)."""
        conn.execute(self._insert(keyword_stats).values(store_id=store_id, n_docs=0, total_length=0, version=0)
                     .on_conflict_do_nothing(index_elements=["store_id"]))
        return conn.execute(select(keyword_stats).where(keyword_stats.c.store_id == store_id)
                            .with_for_update()).one()

    def upsert(self, store_id: str, chunks: Sequence[IndexedChunk]) -> None:
        """Index (or re-index) chunks by chunk id, in one transaction."""
        def work(conn: Connection) -> None:
            stats = self._lock_stats(conn, store_id)
            removed = self._forget(conn, store_id, [c.chunk_id for c in chunks], keyword_docs.c.chunk_id)
            counts = {c.chunk_id: Counter(bm25.words(c.text)) for c in chunks}
            rows: list[dict[str, Any]] = [{"store_id": store_id, "chunk_id": c.chunk_id, "file_id": c.file_id,
                     "length": sum(counts[c.chunk_id].values()), "terms": sorted(counts[c.chunk_id])}
                    for c in {c.chunk_id: c for c in chunks}.values()]
            for part in batches(rows):
                conn.execute(keyword_docs.insert(), list(part))
            numbers = self._numbers(conn, store_id, [row["chunk_id"] for row in rows])
            added: dict[str, list[tuple[int, int, int]]] = {}
            length = 0
            for row in rows:
                length += row["length"]
                for term, tf in counts[row["chunk_id"]].items():
                    added.setdefault(term, []).append((numbers[row["chunk_id"]], tf, row["length"]))
            self._take_out(conn, store_id, removed.docs)
            self._append(conn, store_id, stats.version + 1,
                         {term: np.array(postings, dtype=POSTING) for term, postings in added.items()})
            conn.execute(update(keyword_stats).where(keyword_stats.c.store_id == store_id).values(
                n_docs=stats.n_docs - removed.count + len(rows),
                total_length=stats.total_length - removed.length + length, version=stats.version + 1))

        self._write(work)

    def delete_file(self, store_id: str, file_id: str) -> None:
        def work(conn: Connection) -> None:
            stats = self._lock_stats(conn, store_id)
            removed = self._forget(conn, store_id, [file_id], keyword_docs.c.file_id)
            self._take_out(conn, store_id, removed.docs)
            conn.execute(update(keyword_stats).where(keyword_stats.c.store_id == store_id).values(
                n_docs=stats.n_docs - removed.count, total_length=stats.total_length - removed.length,
                version=stats.version + 1))

        self._write(work)

    def drop(self, store_id: str) -> None:
        def work(conn: Connection) -> None:
            for table in (keyword_segments, keyword_docs, keyword_stats):
                conn.execute(delete(table).where(table.c.store_id == store_id))

        self._write(work)
        self._known.discard(store_id)

    def _numbers(self, conn: Connection, store_id: str, chunk_ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for part in batches(chunk_ids):
            query = select(keyword_docs.c.chunk_id, keyword_docs.c.doc).where(
                keyword_docs.c.store_id == store_id, keyword_docs.c.chunk_id.in_(part))
            found.update((name, doc) for name, doc in conn.execute(query))
        return found

    def _forget(self, conn: Connection, store_id: str, keys: Sequence[str], column: Any) -> Removed:
        """Delete the documents whose `column` is one of `keys`; what went, for the postings."""
        removed = Removed()
        for part in batches(keys):
            where = (keyword_docs.c.store_id == store_id, column.in_(part))
            query = select(keyword_docs.c.doc, keyword_docs.c.terms, keyword_docs.c.length).where(*where)
            for doc, terms, length in conn.execute(query):
                removed.docs[doc] = terms
                removed.count += 1
                removed.length += length
            conn.execute(delete(keyword_docs).where(*where))
        return removed

    def _segment_rows(self, conn: Connection, store_id: str, terms: Sequence[str],
                      column: Any) -> Iterable[tuple[str, int, Any]]:
        """(term, segment number, `column`) for each segment of `terms`, each term's oldest first."""
        for part in batches(terms):
            yield from conn.execute(
                select(keyword_segments.c.term, keyword_segments.c.segment, column)
                .where(keyword_segments.c.store_id == store_id, keyword_segments.c.term.in_(part))
                .order_by(keyword_segments.c.term, keyword_segments.c.segment))

    def _segments(self, conn: Connection, store_id: str, terms: Sequence[str]) -> dict[str, list[Segment]]:
        """Each term's segments, oldest first, postings included."""
        found: dict[str, list[Segment]] = {}
        for term, number, blob in self._segment_rows(conn, store_id, terms, keyword_segments.c.postings):
            postings = unpack(blob)
            found.setdefault(term, []).append(Segment(number, len(postings), postings))
        return found

    def _postings(self, conn: Connection, store_id: str, terms: Sequence[str]) -> dict[str, np.ndarray]:
        return {term: joined([s.postings for s in segments])
                for term, segments in self._segments(conn, store_id, terms).items()}

    def _sizes(self, conn: Connection, store_id: str, terms: Sequence[str]) -> dict[str, list[Segment]]:
        """Each term's segments, oldest first, without their postings (the primary key and size)."""
        found: dict[str, list[Segment]] = {}
        for term, number, size in self._segment_rows(conn, store_id, terms, keyword_segments.c.size):
            found.setdefault(term, []).append(Segment(number, size))
        return found

    def _append(self, conn: Connection, store_id: str, segment: int, added: dict[str, np.ndarray]) -> None:
        """A new segment (numbered `segment`) per term, merged with the newest stored ones when
        `merge_from` says so; only merged segments are read back."""
        existing = self._sizes(conn, store_id, sorted(added))
        merges = {term: held[merge_from(held, len(postings)):] for term, postings in added.items()
                  if (held := existing.get(term, []))}
        merges = {term: segs for term, segs in merges.items() if segs}
        stored = self._segments_by_number(conn, store_id, merges)
        rows = []
        for term, postings in added.items():
            merged = merges.get(term, [])
            parts = [stored[(term, s.number)] for s in merged] + [postings]
            rows.append({"store_id": store_id, "term": term, "segment": merged[0].number if merged else segment,
                         "size": sum(len(p) for p in parts), "postings": joined(parts).tobytes()})
        self._delete_segments(conn, store_id, [(term, s.number) for term, segs in merges.items() for s in segs])
        for part in batches(rows):
            conn.execute(keyword_segments.insert(), list(part))

    def _segments_by_number(self, conn: Connection, store_id: str,
                            wanted: dict[str, list[Segment]]) -> dict[tuple[str, int], np.ndarray]:
        """The postings of the given segments, by (term, number)."""
        found: dict[tuple[str, int], np.ndarray] = {}
        for term, segs in wanted.items():
            query = select(keyword_segments.c.segment, keyword_segments.c.postings).where(
                keyword_segments.c.store_id == store_id, keyword_segments.c.term == term,
                keyword_segments.c.segment.in_([s.number for s in segs]))
            found.update(((term, number), unpack(blob)) for number, blob in conn.execute(query))
        return found

    def _delete_segments(self, conn: Connection, store_id: str, keys: Sequence[tuple[str, int]]) -> None:
        by_term: dict[str, list[int]] = {}
        for term, number in keys:
            by_term.setdefault(term, []).append(number)
        for term, numbers in by_term.items():
            conn.execute(delete(keyword_segments).where(
                keyword_segments.c.store_id == store_id, keyword_segments.c.term == term,
                keyword_segments.c.segment.in_(numbers)))

    def _take_out(self, conn: Connection, store_id: str, removed: dict[int, list[str]]) -> None:
        """Rewrite every term that lost documents as one segment without them; empty ones go."""
        gone: dict[str, list[int]] = {}
        for doc, terms in removed.items():
            for term in terms:
                gone.setdefault(term, []).append(doc)
        if not gone:
            return
        current = self._segments(conn, store_id, sorted(gone))
        rows = []
        for term, segs in current.items():
            postings = joined([s.postings for s in segs])
            postings = postings[~np.isin(postings["doc"], gone[term])]
            if len(postings):
                rows.append({"store_id": store_id, "term": term, "segment": segs[0].number,
                             "size": len(postings), "postings": postings.tobytes()})
        for part in batches(sorted(current)):
            conn.execute(delete(keyword_segments).where(keyword_segments.c.store_id == store_id,
                                                        keyword_segments.c.term.in_(part)))
        for part in batches(rows):
            conn.execute(keyword_segments.insert(), list(part))

    # -- reads ------------------------------------------------------------------------------

    def indexed(self, store_id: str) -> bool:
        """Whether this store has an index (possibly of no chunks)."""
        if store_id in self._known:
            return True
        with self._engine.connect() as conn:
            found = conn.execute(select(func.count()).select_from(keyword_stats)
                                 .where(keyword_stats.c.store_id == store_id)).scalar_one() > 0
        if found:
            self._known.add(store_id)
        return found

    def search(self, store_id: str, terms: Sequence[str], k: int,
               allowed: Sequence[str] | None = None) -> list[Scored]:
        """The `k` best chunks by BM25 over `terms`, best first, ties by chunk id.

        `allowed` limits the search (and the corpus statistics, as a filter does) to those
        chunk ids.
        """
        with self._engine.connect() as conn, conn.begin():
            stats = self._stats(conn, store_id)
            if stats is None:
                return []
            version, n_docs, avgdl = stats
            found = self._cached_terms(conn, store_id, version, terms, n_docs, avgdl)
            if allowed is None:
                ranked = top_documents([(term.docs, term.weights) for term in found.values()], k)
            else:
                keep = np.fromiter(self._numbers(conn, store_id, allowed).values(), dtype="<i8")
                postings = {t: term.postings[np.isin(term.docs, keep)] for t, term in found.items()}
                n_docs, avgdl = len(keep), self._filtered_avgdl(postings, keep, avgdl)
                ranked = top_documents([(p["doc"], weights(p, n_docs, avgdl)) for p in postings.values()], k)
            names = self._chunk_ids(conn, [doc for doc, _ in ranked])
        return sorted((Scored(names[doc], s) for doc, s in ranked), key=lambda h: (-h.bm25, h.chunk_id))

    def warm(self, store_id: str, max_bytes: int, pause: Callable[[], object] | None = None) -> int:
        """Read a store's postings into the cache before a query asks for them; the bytes cached.

        The terms with the most postings come first: they are the slow ones to read cold (45k
        postings took 3-10 ms from a file in the page cache, up to 50 from disk, so the first
        queries after a start took up to 120 ms). Stop words are left out, as queries leave
        them out. Stops at `max_bytes`, and at the cache's own size. One term at a time, with
        `pause()` before each (the warm-up waits there for a quiet moment between searches),
        each read with the store's statistics of that moment; a write meanwhile ends the warm-up
        (what it read is for the old version, which the next query drops).
        """
        budget = min(max_bytes, self._cache.max_bytes)
        with self._engine.connect() as conn, conn.begin():
            stats = self._stats(conn, store_id)
            if stats is None:
                return 0
            postings = func.sum(keyword_segments.c.size)
            sizes = conn.execute(select(keyword_segments.c.term, postings)
                                 .where(keyword_segments.c.store_id == store_id)
                                 .group_by(keyword_segments.c.term)
                                 .order_by(postings.desc(), keyword_segments.c.term)).all()
        chosen, used = [], 0
        for term, size in sizes:
            cost = int(size) * CACHED_POSTING_BYTES
            if term not in bm25.STOP_WORDS and used + cost <= budget:
                chosen.append((term, cost))
                used += cost
        cached = 0
        for term, cost in chosen:
            if pause is not None:
                pause()
            with self._engine.connect() as conn, conn.begin():
                now = self._stats(conn, store_id)
                if now is None or now[0] != stats[0]:
                    break
                version, n_docs, avgdl = now
                self._cached_terms(conn, store_id, version, [term], n_docs, avgdl)
            cached += cost
        return cached

    @staticmethod
    def _stats(conn: Connection, store_id: str) -> tuple[int, int, float] | None:
        """(version, documents, mean document length) of a store with documents, else None."""
        stats = conn.execute(select(keyword_stats).where(keyword_stats.c.store_id == store_id)).first()
        if stats is None or stats.n_docs == 0:
            return None
        return stats.version, stats.n_docs, stats.total_length / stats.n_docs

    @staticmethod
    def _filtered_avgdl(postings: dict[str, np.ndarray], keep: np.ndarray, fallback: float) -> float:
        """Mean length of the allowed documents that hold a query term (the others' lengths
        are not in these postings); the store's mean when none does."""
        seen: dict[int, int] = {}
        for p in postings.values():
            seen.update(zip(p["doc"].tolist(), p["length"].tolist()))
        return sum(seen.values()) / len(seen) if seen and len(keep) else fallback

    def _cached_terms(self, conn: Connection, store_id: str, version: int, terms: Sequence[str],
                      n_docs: int, avgdl: float) -> dict[str, TermPostings]:
        found = {term: p for term in terms if (p := self._cache.get(store_id, version, term)) is not None}
        missing = [term for term in terms if term not in found]
        if missing:
            read = self._postings(conn, store_id, missing)
            for term in missing:
                found[term] = TermPostings.of(read.get(term, np.empty(0, dtype=POSTING)), n_docs, avgdl)
                self._cache.put(store_id, version, term, found[term])
        return found

    def _chunk_ids(self, conn: Connection, docs: Sequence[int]) -> dict[int, str]:
        if not docs:
            return {}
        query = select(keyword_docs.c.doc, keyword_docs.c.chunk_id).where(keyword_docs.c.doc.in_(docs))
        return {doc: name for doc, name in conn.execute(query)}

    def chunk_count(self, store_id: str) -> int:
        with self._engine.connect() as conn:
            n = conn.execute(select(keyword_stats.c.n_docs).where(keyword_stats.c.store_id == store_id)).scalar()
        return int(n or 0)


@dataclass(frozen=True)
class TermPostings:
    """A term's postings with each one's BM25 weight under the store's statistics at this
    version worked out once: weighing 270k postings took 8 of a query's 9 ms of scoring.

    The document numbers are read in place (a strided view): a contiguous copy of them made
    scoring 270k postings 0.25 ms faster but cached postings 33% larger (24 bytes each, not 32).
    """

    postings: np.ndarray
    weights: np.ndarray

    @classmethod
    def of(cls, postings: np.ndarray, n_docs: int, avgdl: float) -> TermPostings:
        return cls(postings, weights(postings, n_docs, avgdl))

    @property
    def docs(self) -> np.ndarray:
        return self.postings["doc"]

    @property
    def nbytes(self) -> int:
        return self.postings.nbytes + self.weights.nbytes


class PostingsCache:
    """Recently read postings, least recently used out first, tagged with the store's version.

    A frequent term's postings run to hundreds of kilobytes; reading them back from the
    database for every query cost more than scoring them. Any write bumps the store's version
    (in the database, so a write by another process counts too), and a query that sees a newer
    version drops what was cached for that store (its statistics, and so the weights, changed).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], TermPostings] = OrderedDict()
        self._versions: dict[str, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, store_id: str, version: int, term: str) -> TermPostings | None:
        with self._lock:
            if self._versions.get(store_id) != version:
                self._drop_store(store_id)
                self._versions[store_id] = version
                return None
            found = self._entries.get((store_id, term))
            if found is not None:
                self._entries.move_to_end((store_id, term))
            return found

    def put(self, store_id: str, version: int, term: str, postings: TermPostings) -> None:
        with self._lock:
            if self._versions.get(store_id) != version or postings.nbytes > self.max_bytes:
                return
            old = self._entries.pop((store_id, term), None)
            self._bytes += postings.nbytes - (old.nbytes if old is not None else 0)
            self._entries[(store_id, term)] = postings
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes

    def _drop_store(self, store_id: str) -> None:
        for key in [key for key in self._entries if key[0] == store_id]:
            self._bytes -= self._entries.pop(key).nbytes


@dataclass(frozen=True)
class Segment:
    """One stored segment of a term: its number, how many postings, and (when read) them."""

    number: int
    size: int
    postings: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=POSTING))


def merge_from(held: Sequence[Segment], new_size: int) -> int:
    """Where the merge with a new segment of `new_size` postings starts among `held` (oldest
    first): the newest segments are absorbed while none older is larger than them and the new
    one together, as a binary counter carries. len(held) means no merge."""
    start, total = len(held), new_size
    while start > 0 and held[start - 1].size <= total:
        start -= 1
        total += held[start].size
    return start


def joined(parts: Sequence[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=POSTING)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _move_old_terms(engine: Engine) -> None:
    """An index from before segments keeps its postings: each old row becomes segment 0."""
    if OLD_TERMS not in inspect(engine).get_table_names():
        return
    with engine.connect() as conn:
        conn.execution_options(ggstack_write=True)
        with conn.begin():
            if not inspect(conn).has_table(OLD_TERMS):  # another process moved it meanwhile
                return
            old = Table(OLD_TERMS, MetaData(), autoload_with=conn)
            for store_id, term, blob in conn.execute(select(old.c.store_id, old.c.term, old.c.postings)).all():
                conn.execute(keyword_segments.insert().values(store_id=store_id, term=term, segment=0,
                                                              size=len(blob) // POSTING.itemsize, postings=blob))
            old.drop(conn)


@dataclass
class Removed:
    """Documents taken out in one write: their terms, how many, and their total length."""

    docs: dict[int, list[str]] = field(default_factory=dict)
    count: int = 0
    length: int = 0


def weights(postings: np.ndarray, n_docs: int, avgdl: float) -> np.ndarray:
    """Each posting's share of its document's score: `bm25.score` for this one term."""
    tf = postings["tf"].astype(np.float64)
    norm = bm25.K1 * (1.0 - bm25.B + bm25.B * postings["length"] / avgdl) if avgdl > 0 else bm25.K1
    return bm25.idf(n_docs, len(postings)) * tf * (bm25.K1 + 1.0) / (tf + norm)


def top_documents(terms: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> list[tuple[int, float]]:
    """(document, bm25) of the `k` best documents holding any term, from each term's
    (document numbers, weights): the weights summed per document."""
    live = [(docs, w) for docs, w in terms if len(docs)]
    if not live:
        return []
    # Document numbers of one store are nearly contiguous, so scores sit in one array indexed
    # by (number - smallest); a bincount per term adds into it without sorting anything.
    first = min(int(docs.min()) for docs, _ in live)
    size = max(int(docs.max()) for docs, _ in live) - first + 1
    scores = np.zeros(size)
    for docs, w in live:
        scores += np.bincount(docs - first, weights=w, minlength=size)
    held = np.flatnonzero(scores > 0)
    if len(held) > k:
        held = held[np.argpartition(-scores[held], k - 1)[:k]]
    return [(first + int(i), float(scores[i])) for i in held if not math.isnan(scores[i])]
