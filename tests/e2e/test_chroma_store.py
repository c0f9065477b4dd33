"""ChromaVectorStore against real Chroma: embedded (PersistentClient) and a `chroma run` server."""

from __future__ import annotations

import hashlib
import math
import random
import uuid

import pytest

from ggstack.core.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from ggstack.stores.base import Chunk
from ggstack.stores.chroma import ChromaVectorStore
from ggstack.stores.keywords import KeywordIndex

pytestmark = pytest.mark.anyio

DIM = 64


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def embed(text: str) -> list[float]:
    """A deterministic bag-of-words embedding: texts sharing words point the same way."""
    vector = [0.0] * DIM
    for word in text.lower().split():
        word = word.strip(".,!?")
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def chunk(file_id: str, index: int, text: str, **attributes) -> Chunk:
    return Chunk(file_id=file_id, index=index, text=text, embedding=embed(text), attributes=attributes)


CORPUS = [
    chunk("file-cats", 0, "Cats purr and sleep in the sun", topic="pets", year=2020, public=True),
    chunk("file-cats", 1, "A cat chases mice at night", topic="pets", year=2021, public=True),
    chunk("file-space", 0, "Rockets launch satellites into orbit", topic="space", year=2022, public=False),
    chunk("file-space", 1, "The orbit of the moon around the earth", topic="space", year=2019, public=True),
    chunk("file-cook", 0, "Bake bread with flour water and salt", topic="food", year=2023, public=True),
    chunk("file-cook", 1, "Salt salt salt: seasoning bread dough", topic="food", year=2018, public=False),
]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    store = ChromaVectorStore.embedded(tmp_path_factory.mktemp("chroma-embedded"))
    yield store
    store.close()


@pytest.fixture(scope="module")
def server(chroma_server_url):
    store = ChromaVectorStore.server(chroma_server_url)
    yield store
    store.close()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """Embedded Chroma with the SQL keyword index, as the server opens it."""
    root = tmp_path_factory.mktemp("chroma-indexed")
    keywords = KeywordIndex.open(f"sqlite:///{root / 'ggstack.db'}")
    store = ChromaVectorStore.embedded(root / "chroma", keywords)
    yield store
    store.close()
    keywords.close()


@pytest.fixture(params=["embedded", "server", "indexed"])
def vectors(request) -> ChromaVectorStore:
    return request.getfixturevalue(request.param)


@pytest.fixture
async def loaded(vectors):
    """A fresh vector store holding CORPUS; (store, id)."""
    store_id = f"vs_{uuid.uuid4().hex}"
    await vectors.create(store_id, dimension=DIM, metadata={"name": "test"})
    await vectors.upsert_chunks(store_id, CORPUS)
    yield vectors, store_id
    await vectors.drop(store_id)


async def test_vector_query_finds_the_nearest_chunk(loaded):
    vectors, store_id = loaded
    hits = await vectors.query(store_id, embed("Cats purr and sleep in the sun"), k=3)
    assert hits[0].chunk.id == "file-cats:0"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].chunk.text == "Cats purr and sleep in the sun"
    assert hits[0].chunk.attributes == {"topic": "pets", "year": 2020, "public": True}
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    hits = await vectors.query(store_id, embed("moon orbit"), k=2)
    assert {h.chunk.file_id for h in hits} == {"file-space"}


async def test_keyword_search_ranks_by_bm25(loaded):
    vectors, store_id = loaded
    hits = await vectors.keyword(store_id, "SALT bread", k=10)
    # "salt" three times in a short chunk beats one "salt" among more words.
    assert [h.chunk.id for h in hits] == ["file-cook:1", "file-cook:0"]
    assert 0 < hits[1].score < hits[0].score < 1
    # Whole words only: "cat" does not match "Cats"; stop words alone still search.
    assert [h.chunk.id for h in await vectors.keyword(store_id, "cat", k=10)] == ["file-cats:1"]
    assert await vectors.keyword(store_id, "zebra", k=10) == []
    assert await vectors.keyword(store_id, "?!", k=10) == []
    orbit = await vectors.keyword(store_id, "the orbit", k=10)
    assert {h.chunk.id for h in orbit} == {"file-space:0", "file-space:1"}


async def test_hybrid_fuses_vector_and_keyword(loaded):
    vectors, store_id = loaded
    hits = await vectors.hybrid(store_id, embed("moon"), "rockets", k=3)
    ids = [h.chunk.id for h in hits]
    assert set(ids[:2]) == {"file-space:0", "file-space:1"}
    assert all(0 < h.score <= 1 for h in hits)
    weighted = await vectors.hybrid(store_id, embed("moon"), "rockets", k=3, ranker="weighted", alpha=0.0)
    assert weighted[0].chunk.id == "file-space:0"
    with pytest.raises(InvalidValueError):
        await vectors.hybrid(store_id, embed("moon"), "rockets", ranker="borda")


async def test_filters_apply_to_vector_keyword_and_hybrid(loaded):
    vectors, store_id = loaded
    pets_after_2020 = {"type": "and", "filters": [{"type": "eq", "key": "topic", "value": "pets"},
                                                  {"type": "gt", "key": "year", "value": 2020}]}
    hits = await vectors.query(store_id, embed("cats purr"), k=10, where=pets_after_2020)
    assert [h.chunk.id for h in hits] == ["file-cats:1"]
    private_or_old = {"type": "or", "filters": [{"type": "eq", "key": "public", "value": False},
                                                {"type": "lte", "key": "year", "value": 2019}]}
    hits = await vectors.query(store_id, embed("anything"), k=10, where=private_or_old)
    assert {h.chunk.id for h in hits} == {"file-space:0", "file-space:1", "file-cook:1"}
    hits = await vectors.keyword(store_id, "salt bread", k=10,
                                 where={"type": "eq", "key": "public", "value": True})
    assert [h.chunk.id for h in hits] == ["file-cook:0"]
    hits = await vectors.hybrid(store_id, embed("orbit"), "orbit", k=10,
                                where={"type": "ne", "key": "topic", "value": "space"})
    assert all(h.chunk.file_id != "file-space" for h in hits)
    hits = await vectors.query(store_id, embed("x"), k=10,
                               where={"type": "in", "key": "topic", "value": ["food", "space"]})
    assert len(hits) == 4
    with pytest.raises(InvalidValueError):
        await vectors.query(store_id, embed("x"), where={"type": "gt", "key": "year", "value": "2020"})


async def test_upsert_is_idempotent_and_overwrites(loaded):
    vectors, store_id = loaded
    assert await vectors.count(store_id) == len(CORPUS)
    await vectors.upsert_chunks(store_id, CORPUS)
    assert await vectors.count(store_id) == len(CORPUS)
    await vectors.upsert_chunks(store_id, [chunk("file-cats", 0, "Cats now nap indoors", topic="pets")])
    assert await vectors.count(store_id) == len(CORPUS)
    first = (await vectors.file_chunks(store_id, "file-cats"))[0]
    assert first.text == "Cats now nap indoors" and first.attributes == {"topic": "pets"}


async def test_file_chunks_in_order_and_delete_file(loaded):
    vectors, store_id = loaded
    many = [chunk("file-long", i, f"part {i} of a long file") for i in range(12)]
    random.Random(3).shuffle(many)
    await vectors.upsert_chunks(store_id, many)
    chunks = await vectors.file_chunks(store_id, "file-long", with_embeddings=True)
    assert [c.index for c in chunks] == list(range(12))
    assert chunks[5].text == "part 5 of a long file"
    assert chunks[5].embedding == pytest.approx(embed("part 5 of a long file"), abs=1e-6)
    await vectors.delete_file(store_id, "file-long")
    assert await vectors.file_chunks(store_id, "file-long") == []
    assert await vectors.count(store_id) == len(CORPUS)
    await vectors.delete_file(store_id, "file-cats")
    assert {h.chunk.file_id for h in await vectors.query(store_id, embed("cat"), k=10)} == {
        "file-space", "file-cook"}


async def test_lifecycle_and_errors(vectors):
    store_id = f"vs_{uuid.uuid4().hex}"
    assert not await vectors.exists(store_id)
    with pytest.raises(NotFoundError):
        await vectors.query(store_id, embed("x"))
    with pytest.raises(NotFoundError):
        await vectors.upsert_chunks(store_id, CORPUS[:1])
    await vectors.create(store_id, dimension=DIM)
    await vectors.create(store_id, dimension=DIM)  # idempotent
    assert await vectors.exists(store_id)
    assert await vectors.query(store_id, embed("x")) == []
    assert await vectors.keyword(store_id, "x") == []
    with pytest.raises(AlreadyExistsError):
        await vectors.create(store_id, dimension=DIM + 1)
    with pytest.raises(InvalidValueError):
        await vectors.upsert_chunks(store_id, [Chunk("f", 0, "short", embedding=[1.0, 0.0])])
    with pytest.raises(InvalidValueError):
        await vectors.query(store_id, [1.0, 0.0])
    with pytest.raises(InvalidValueError):
        await vectors.query(store_id, embed("x"), k=0)
    assert await vectors.drop(store_id) is True
    assert await vectors.drop(store_id) is False
    assert not await vectors.exists(store_id)
    with pytest.raises(NotFoundError):
        await vectors.keyword(store_id, "x")


async def test_store_ids_with_unsafe_characters(vectors):
    store_id = "vs/odd id..with spaces"
    await vectors.create(store_id, dimension=DIM)
    try:
        await vectors.upsert_chunks(store_id, CORPUS[:2])
        assert await vectors.count(store_id) == 2
    finally:
        await vectors.drop(store_id)


async def test_embedded_data_survives_reopen(tmp_path):
    first = ChromaVectorStore.embedded(tmp_path)
    await first.create("vs_persist", dimension=DIM)
    await first.upsert_chunks("vs_persist", CORPUS)
    first.close()
    second = ChromaVectorStore.embedded(tmp_path)
    try:
        hits = await second.query("vs_persist", embed("Bake bread with flour water and salt"), k=1)
        assert hits[0].chunk.id == "file-cook:0"
    finally:
        second.close()


async def test_many_chunks_in_batches(vectors, monkeypatch):
    store_id = f"vs_{uuid.uuid4().hex}"
    await vectors.create(store_id, dimension=DIM)
    try:
        # Force several upsert batches without needing thousands of chunks.
        monkeypatch.setattr(vectors, "_batch_size", 7)
        chunks = [chunk("file-many", i, f"chunk number {i}") for i in range(30)]
        await vectors.upsert_chunks(store_id, chunks)
        assert await vectors.count(store_id) == 30
    finally:
        await vectors.drop(store_id)


async def test_set_file_attributes_replaces_them_on_every_chunk(loaded):
    vectors, store_id = loaded
    await vectors.set_file_attributes(store_id, "file-space", {"topic": "astronomy", "reviewed": True})
    chunks = await vectors.file_chunks(store_id, "file-space")
    assert [c.attributes for c in chunks] == [{"topic": "astronomy", "reviewed": True}] * 2
    assert [c.index for c in chunks] == [0, 1] and chunks[0].text == CORPUS[2].text
    hits = await vectors.query(store_id, embed("x"), k=10,
                               where={"type": "eq", "key": "topic", "value": "astronomy"})
    assert {h.chunk.id for h in hits} == {"file-space:0", "file-space:1"}
    await vectors.set_file_attributes(store_id, "no-such-file", {"a": 1})
