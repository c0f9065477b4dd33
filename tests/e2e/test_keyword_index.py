"""The SQL keyword index beside embedded Chroma: BM25 as defined, kept in step, rebuilt when missing."""

from __future__ import annotations

import math
import uuid
from collections import Counter

import pytest

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
