"""The SQL keyword index beside embedded Chroma: BM25 as defined, kept in step, rebuilt when missing."""

from __future__ import annotations

import math
import uuid
from collections import Counter

import pytest
from sqlalchemy import create_engine, inspect, select, text

from ggstack.stores.base import Chunk
from ggstack.stores.chroma import ChromaVectorStore
from ggstack.stores.keywords import KeywordIndex

pytestmark = pytest.mark.anyio

TEXTS = {
    ("file-a", 0): "salt and pepper on the bread",
    ("file-a", 1): "salt salt salt in the sea water",
    ("file-b", 0): "fresh bread from the old bakery near the harbour",
    ("file-b", 1): "the harbour water was cold and grey",
    ("file-c", 0): "pepper plants need warm weather",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("keywords")
    keywords = KeywordIndex.open(f"sqlite:///{root / 'ggstack.db'}")
    vectors = ChromaVectorStore.embedded(root / "chroma", keywords)
    yield vectors, keywords
    vectors.close()
    keywords.close()


@pytest.fixture
async def store(setup):
    vectors, keywords = setup
    store_id = f"vs_{uuid.uuid4().hex}"
    await vectors.create(store_id, dimension=2)
    await vectors.upsert_chunks(store_id, [Chunk(f, i, text, embedding=[1.0, float(i)])
                                           for (f, i), text in TEXTS.items()])
    yield vectors, keywords, store_id
    await vectors.drop(store_id)


def expected_bm25(texts: dict[str, str], query: list[str]) -> dict[str, float]:
    """Okapi BM25 with Lucene's idf, k1 = 1.2, b = 0.75, written out from its definition."""
    docs = {doc: text.split() for doc, text in texts.items()}
    avgdl = sum(len(words) for words in docs.values()) / len(docs)
    out = {}
    for doc, words in docs.items():
        tf = Counter(words)
        total = 0.0
        for term in query:
            df = sum(term in other for other in docs.values())
            if tf[term]:
                idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                total += idf * tf[term] * 2.2 / (tf[term] + 1.2 * (0.25 + 0.75 * len(words) / avgdl))
        if total:
            out[doc] = total
    return out


async def test_scores_are_bm25_over_the_whole_store(store):
    vectors, _, store_id = store
    hits = await vectors.keyword(store_id, "salt bread harbour", k=10)
    expected = expected_bm25({f"{f}:{i}": t for (f, i), t in TEXTS.items()}, ["salt", "bread", "harbour"])
    assert {h.chunk.id for h in hits} == set(expected)
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.chunk.id] / (1 + expected[hit.chunk.id]))
    assert [h.chunk.id for h in hits] == sorted(expected, key=lambda d: (-expected[d], d))
    assert [h.chunk.id for h in await vectors.keyword(store_id, "salt bread harbour", k=2)] == [
        h.chunk.id for h in hits[:2]]
    file_id, index = hits[0].chunk.id.split(":")
    assert hits[0].chunk.text == TEXTS[(file_id, int(index))]


async def test_delete_and_overwrite_keep_the_index_in_step(store):
    vectors, keywords, store_id = store
    await vectors.delete_file(store_id, "file-a")
    assert keywords.chunk_count(store_id) == 3
    assert {h.chunk.id for h in await vectors.keyword(store_id, "salt pepper", k=10)} == {"file-c:0"}
    await vectors.upsert_chunks(store_id, [Chunk("file-c", 0, "tomatoes need sun", embedding=[1.0, 0.0])])
    assert await vectors.keyword(store_id, "pepper", k=10) == []
    assert [h.chunk.id for h in await vectors.keyword(store_id, "tomatoes", k=10)] == ["file-c:0"]
    assert keywords.chunk_count(store_id) == 3


async def test_a_missing_index_is_rebuilt_from_chroma(store):
    vectors, keywords, store_id = store
    before = await vectors.keyword(store_id, "water", k=10)
    keywords.drop(store_id)
    assert not keywords.indexed(store_id)
    assert await vectors.keyword(store_id, "water", k=10) == before
    assert keywords.indexed(store_id) and keywords.chunk_count(store_id) == len(TEXTS)


async def test_drop_removes_the_index(setup):
    vectors, keywords = setup
    store_id = f"vs_{uuid.uuid4().hex}"
    await vectors.create(store_id, dimension=2)
    await vectors.upsert_chunks(store_id, [Chunk("f", 0, "alpha beta", embedding=[1.0, 0.0])])
    assert keywords.indexed(store_id)
    await vectors.drop(store_id)
    assert not keywords.indexed(store_id)
    assert keywords.search(store_id, ["alpha"], 10) == []


def test_cached_postings_follow_a_write_by_another_process(tmp_path):
    from ggstack.stores.keywords import IndexedChunk

    url = f"sqlite:///{tmp_path / 'ggstack.db'}"
    reader, writer = KeywordIndex.open(url), KeywordIndex.open(url)  # two servers on one database
    try:
        writer.upsert("vs", [IndexedChunk("f:0", "f", "red apples"), IndexedChunk("f:1", "f", "green pears")])
        assert [s.chunk_id for s in reader.search("vs", ["apples"], 10)] == ["f:0"]
        writer.upsert("vs", [IndexedChunk("g:0", "g", "apples apples apples")])
        assert [s.chunk_id for s in reader.search("vs", ["apples"], 10)] == ["g:0", "f:0"]
        writer.delete_file("vs", "g")
        assert [s.chunk_id for s in reader.search("vs", ["apples"], 10)] == ["f:0"]
    finally:
        reader.close()
        writer.close()


@pytest.fixture
def keyword_url(tmp_path) -> str:
    """The database the index lives in (tests/e2e/test_store_postgres.py runs these on PostgreSQL)."""
    return f"sqlite:///{tmp_path / 'ggstack.db'}"


def segment_sizes(index: KeywordIndex, store_id: str, term: str) -> list[int]:
    from ggstack.stores.keywords import keyword_segments

    with index._engine.connect() as conn:
        return [size for (size,) in conn.execute(
            select(keyword_segments.c.size).where(keyword_segments.c.store_id == store_id,
                                                  keyword_segments.c.term == term)
            .order_by(keyword_segments.c.segment))]


def test_adding_chunks_appends_segments_merged_as_a_binary_counter(keyword_url):
    """Seven one-chunk batches leave segments of 4, 2 and 1 postings (nothing rewritten but the
    merged ones); the eighth merges all into one. Scores are those of one index built at once."""
    from ggstack.stores.keywords import IndexedChunk

    index = KeywordIndex.open(keyword_url)
    try:
        chunks = [IndexedChunk(f"f:{i}", "f", f"alpha {'beta ' * i}gamma{i}") for i in range(8)]
        for chunk in chunks[:7]:
            index.upsert("vs", [chunk])
        assert segment_sizes(index, "vs", "alpha") == [4, 2, 1]
        assert segment_sizes(index, "vs", "beta") == [4, 2]  # chunk 0 has no beta
        index.upsert("vs", [chunks[7]])
        assert segment_sizes(index, "vs", "alpha") == [8]
        index.upsert("at_once", chunks)
        assert index.search("vs", ["alpha", "beta", "gamma3"], 8) == index.search("at_once", ["alpha", "beta", "gamma3"], 8)
        index.delete_file("vs", "f")
        assert index.search("vs", ["alpha"], 8) == [] and segment_sizes(index, "vs", "alpha") == []
    finally:
        index.close()


def test_taking_chunks_out_rewrites_their_terms_as_one_segment(keyword_url):
    from ggstack.stores.keywords import IndexedChunk

    index = KeywordIndex.open(keyword_url)
    try:
        for i in range(3):
            index.upsert("vs", [IndexedChunk(f"{name}:{i}", name, "salt water") for name in ("a", "b")])
        assert segment_sizes(index, "vs", "salt") == [4, 2]
        index.delete_file("vs", "a")
        assert segment_sizes(index, "vs", "salt") == [3]
        assert sorted(s.chunk_id for s in index.search("vs", ["salt"], 10)) == ["b:0", "b:1", "b:2"]
        index.upsert("vs", [IndexedChunk("b:1", "b", "fresh water")])  # re-indexing a chunk id
        assert segment_sizes(index, "vs", "salt") == [2]
        assert sorted(s.chunk_id for s in index.search("vs", ["salt"], 10)) == ["b:0", "b:2"]
        assert index.chunk_count("vs") == 3
    finally:
        index.close()


def test_warming_reads_the_largest_postings_first_and_changes_no_answer(keyword_url):
    """`warm` caches the terms with the most postings, stop words left out, within its budget;
    a warmed reader and a cold one answer every query (filtered too) exactly alike."""
    from ggstack.stores.keywords import CACHED_POSTING_BYTES, IndexedChunk

    writer = KeywordIndex.open(keyword_url)
    cold, warmed = KeywordIndex.open(keyword_url), KeywordIndex.open(keyword_url)  # as after a restart
    try:
        # "the" in 8 chunks (a stop word), "salt" in 6, "water" in 4, "bread" in 2, "rare" in 1.
        writer.upsert("vs", [IndexedChunk(f"f:{i}", "f", " ".join(
            ["the"] + ["salt"] * (i < 6) + ["water"] * (i < 4) + ["bread"] * (i < 2) + ["rare"] * (i < 1)))
            for i in range(8)])
        assert warmed.warm("vs", 10 * CACHED_POSTING_BYTES) == 10 * CACHED_POSTING_BYTES
        with warmed._engine.connect() as conn:
            version = warmed._stats(conn, "vs")[0]
        cached = {t for t in ("the", "salt", "water", "bread", "rare") if warmed._cache.get("vs", version, t)}
        assert cached == {"salt", "water"}
        assert warmed.warm("absent", 1 << 20) == 0
        for terms in (["salt"], ["water", "bread"], ["rare", "salt", "the"], ["nothing"]):
            for allowed in (None, ["f:0", "f:3", "f:5"]):
                assert warmed.search("vs", terms, 5, allowed) == cold.search("vs", terms, 5, allowed)
    finally:
        for index in (writer, cold, warmed):
            index.close()


def test_warming_pauses_before_each_term_and_stops_at_a_write(keyword_url):
    """`warm` reads one term per step with `pause()` before each (where the warm-up gives way to
    searches); a write between two steps ends it, so nothing is cached for the old version
    after the write, and a query still answers as a cold reader does."""
    from ggstack.stores.keywords import CACHED_POSTING_BYTES, IndexedChunk

    writer = KeywordIndex.open(keyword_url)
    cold, warmed = KeywordIndex.open(keyword_url), KeywordIndex.open(keyword_url)
    try:
        writer.upsert("vs", [IndexedChunk(f"f:{i}", "f", " ".join(
            ["salt"] * (i < 6) + ["water"] * (i < 4) + ["bread"] * (i < 2) + ["rare"]))
            for i in range(8)])
        steps: list[int] = []
        assert warmed.warm("vs", 1 << 20, pause=lambda: steps.append(len(steps))) == 20 * CACHED_POSTING_BYTES
        assert len(steps) == 4  # rare, salt, water, bread: one pause each

        def write_at_second_step() -> None:
            steps.append(len(steps))
            if len(steps) == 2:
                writer.upsert("vs", [IndexedChunk("f:9", "f", "salt and more salt")])

        steps.clear()
        fresh = KeywordIndex.open(keyword_url)
        try:
            # The largest term ("rare", 8 postings) is read; the write comes before the second.
            assert fresh.warm("vs", 1 << 20, pause=write_at_second_step) == 8 * CACHED_POSTING_BYTES
            assert len(steps) == 2
            for terms in (["salt"], ["rare", "water"]):
                assert fresh.search("vs", terms, 5) == cold.search("vs", terms, 5)
        finally:
            fresh.close()
    finally:
        for index in (writer, cold, warmed):
            index.close()


def test_search_activity_holds_background_work_while_a_search_runs():
    """`wait_quiet` says quiet only when no search runs (and none ended within the gap); a
    search in flight makes it give up at its bound instead."""
    from ggstack.stores.activity import SearchActivity

    activity = SearchActivity()
    assert activity.wait_quiet(gap_s=0.0, max_wait_s=0.0)
    with activity.searching():
        assert not activity.wait_quiet(gap_s=0.0, max_wait_s=0.01)
        with activity.searching():
            pass
        assert not activity.wait_quiet(gap_s=0.0, max_wait_s=0.0)  # the outer one still runs
    assert not activity.wait_quiet(gap_s=3600.0, max_wait_s=0.0)  # one just ended
    assert activity.wait_quiet(gap_s=0.0, max_wait_s=0.0)


def test_an_index_from_before_segments_keeps_its_postings(tmp_path):
    """The old one-row-per-term table is moved into segments when the index opens."""
    import numpy as np

    from ggstack.stores.keywords import OLD_TERMS, POSTING, IndexedChunk

    url = f"sqlite:///{tmp_path / 'ggstack.db'}"
    KeywordIndex.open(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {OLD_TERMS} (store_id VARCHAR(255), term VARCHAR(255), "
                          "postings BLOB, PRIMARY KEY (store_id, term))"))
        conn.execute(text("INSERT INTO ggstack_keyword_docs (doc, store_id, chunk_id, file_id, length, terms) "
                          "VALUES (1, 'vs', 'f:0', 'f', 2, '[\"old\", \"salt\"]')"))
        conn.execute(text("INSERT INTO ggstack_keyword_stores VALUES ('vs', 1, 2, 1)"))
        for term in ("old", "salt"):
            conn.execute(text(f"INSERT INTO {OLD_TERMS} VALUES ('vs', :term, :postings)"),
                         {"term": term, "postings": np.array([(1, 1, 2)], dtype=POSTING).tobytes()})
    engine.dispose()
    index = KeywordIndex.open(url)
    try:
        assert [s.chunk_id for s in index.search("vs", ["old"], 10)] == ["f:0"]
        index.upsert("vs", [IndexedChunk("g:0", "g", "salt salt")])
        assert segment_sizes(index, "vs", "salt") == [2]
        assert [s.chunk_id for s in index.search("vs", ["salt"], 10)] == ["g:0", "f:0"]
        assert OLD_TERMS not in inspect(index._engine).get_table_names()
    finally:
        index.close()
