"""Vector stores end to end: a real server with the tiny embedding GGUF, real Chroma in both
modes (embedded, and a `chroma run` server), driven by the openai SDK.

The tiny model's embeddings are random but deterministic, so vector search is checked with
queries equal to a file's whole text (cosine 1); keyword search checks real words.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from typing import Any

import httpx
import openai
import pytest

from tests.server import Server, served
from tests.unit.test_ingest import make_pdf

MODES = ("embedded", "server")


def detail(error: openai.APIStatusError) -> str:
    return error.response.json()["detail"]


def tiny_config(tiny_embed_gguf, chroma_url: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"models": [{"identifier": "emb", "path": str(tiny_embed_gguf),
                                          "model_type": "embedding"}]}
    if chroma_url:
        config["chroma_url"] = chroma_url
    return config


def chroma_url_for(request, mode: str) -> str | None:
    return request.getfixturevalue("chroma_server_url") if mode == "server" else None


def connect(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1/openai/v1", api_key="x", max_retries=0)


def upload(client: openai.OpenAI, name: str, data: bytes | str, content_type: str | None = None) -> str:
    data = data.encode() if isinstance(data, str) else data
    part = (name, data, content_type) if content_type else (name, data)
    return client.files.create(file=part, purpose="assistants").id


def wait_until(check, timeout: float = 60.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def settled_batch(client: openai.OpenAI, store_id: str, batch_id: str, timeout: float = 60.0):
    def done():
        batch = client.vector_stores.file_batches.retrieve(batch_id=batch_id, vector_store_id=store_id)
        return batch if batch.file_counts.in_progress == 0 else None

    return wait_until(done, timeout)


def chunk_texts(server: Server, store_id: str, file_id: str) -> list[str]:
    response = httpx.get(f"{server.url}/v1/vector_stores/{store_id}/files/{file_id}/content")
    assert response.status_code == 200, response.text
    return [item["text"] for item in response.json()["content"]]


def prose(topic: str, sentences: int) -> str:
    return " ".join(f"Sentence {i} is about {topic} and nothing else." for i in range(sentences))


@pytest.fixture(scope="module", params=MODES)
def server(request, tmp_path_factory, tiny_embed_gguf):
    mode = request.param
    yield from served(tmp_path_factory.mktemp(f"vs-{mode}"),
                      config=tiny_config(tiny_embed_gguf, chroma_url_for(request, mode)))


@pytest.fixture
def client(server):
    return connect(server)


def test_store_lifecycle(client):
    created = client.vector_stores.create(name="docs", metadata={"team": "a", "n": "3"},
                                          expires_after={"anchor": "last_active_at", "days": 7})
    assert created.id.startswith("vs_")
    assert (created.name, created.status, created.usage_bytes) == ("docs", "completed", 0)
    assert created.metadata == {"team": "a", "n": "3"}
    assert created.file_counts.model_dump() == {"cancelled": 0, "completed": 0, "failed": 0,
                                                "in_progress": 0, "total": 0}
    assert created.expires_at == created.last_active_at + 7 * 86400
    assert client.vector_stores.retrieve(created.id).model_dump() == created.model_dump()

    others = [client.vector_stores.create(name=f"other-{i}").id for i in range(2)]
    first = client.vector_stores.list(limit=2)
    assert [s.id for s in first.data] == list(reversed(others))
    assert first.has_more
    rest = client.vector_stores.list(limit=2, after=first.data[-1].id)
    assert rest.data[0].id == created.id

    updated = client.vector_stores.update(created.id, name="renamed", metadata={"team": "b"},
                                          expires_after={"anchor": "last_active_at", "days": 1})
    assert (updated.name, updated.metadata) == ("renamed", {"team": "b"})
    assert updated.expires_at == updated.last_active_at + 86400

    deleted = client.vector_stores.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "vector_store.deleted")
    with pytest.raises(openai.BadRequestError) as info:
        client.vector_stores.retrieve(created.id)
    assert detail(info.value).startswith("Invalid value")
    assert created.id not in {s.id for s in client.vector_stores.list(limit=100)}


def test_create_validates_model_dimension_and_expiry(client):
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.create(extra_body={"embedding_model": "no-such-model"})
    with pytest.raises(openai.BadRequestError) as info:
        client.vector_stores.create(extra_body={"embedding_model": "emb", "embedding_dimension": 384})
    assert "embedding_dimension" in detail(info.value)
    store = client.vector_stores.create(extra_body={"embedding_model": "emb", "embedding_dimension": 32})
    assert store.status == "completed"
    for bad in ({"anchor": "created_at", "days": 1}, {"anchor": "last_active_at", "days": 0}):
        with pytest.raises(openai.BadRequestError):
            client.vector_stores.create(expires_after=bad)
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(metadata={f"k{i}": "v" for i in range(17)})


def test_a_missing_file_id_fails_that_file_not_the_store(client):
    """As the reference and OpenAI do: the store is made, the file is `failed` with a reason."""
    good = upload(client, "here.txt", "This file exists.")
    store = client.vector_stores.create(name="partly", file_ids=[good, "file-nope"])
    counts = store.file_counts
    assert (counts.completed, counts.failed, counts.total) == (1, 1, 2)
    missing = client.vector_stores.files.retrieve(vector_store_id=store.id, file_id="file-nope")
    assert missing.status == "failed" and "file-nope" in missing.last_error.message
    assert missing.last_error.code == "server_error"
    listed = client.vector_stores.files.list(vector_store_id=store.id, filter="failed")
    assert [f.id for f in listed.data] == ["file-nope"]
    assert client.vector_stores.files.delete(vector_store_id=store.id, file_id="file-nope").deleted
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.completed, counts.failed, counts.total) == (1, 0, 1)


def test_every_format_is_indexed_and_its_chunks_readable(client, server):
    files = {
        "notes.txt": ("Plain words about otters.", None),
        "guide.md": ("# Guide\n\nMarkdown about *badgers*.", None),
        "data.json": ('{"animal": "heron", "legs": 2}', None),
        "table.csv": ("animal,legs\nspider,8\n", None),
        "page.html": (("<html><head><title>Moles</title><script>var hidden = 1;</script></head>"
                       "<body><p>Moles dig tunnels.</p></body></html>"), None),
        "paper.pdf": (make_pdf(["Voles live in meadows."]), "application/pdf"),
    }
    ids = {name: upload(client, name, data, content_type) for name, (data, content_type) in files.items()}
    store = client.vector_stores.create(name="formats", file_ids=list(ids.values()))
    assert store.file_counts.completed == len(files), store.file_counts
    assert store.status == "completed" and store.usage_bytes > 0

    text = {name: "\n".join(chunk_texts(server, store.id, file_id)) for name, file_id in ids.items()}
    assert text["notes.txt"] == "Plain words about otters."
    assert "Markdown about *badgers*." in text["guide.md"]
    assert '"animal": "heron"' in text["data.json"]
    assert "spider | 8" in text["table.csv"]
    assert "Moles dig tunnels." in text["page.html"] and "hidden" not in text["page.html"]
    assert "Voles live in meadows." in text["paper.pdf"]

    listed = client.vector_stores.files.list(vector_store_id=store.id, limit=100)
    assert {f.id for f in listed.data} == set(ids.values())
    one = client.vector_stores.files.retrieve(vector_store_id=store.id, file_id=ids["notes.txt"])
    assert (one.status, one.vector_store_id, one.chunking_strategy.type) == ("completed", store.id, "auto")
    assert one.usage_bytes > len("Plain words about otters.")


def test_unparseable_files_fail_with_a_reason(client):
    good = upload(client, "ok.txt", "fine text")
    broken = upload(client, "broken.json", "{not json")
    image = upload(client, "photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "image/png")
    store = client.vector_stores.create(name="mixed")
    results = {file_id: client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
               for file_id in (good, broken, image)}
    assert results[good].status == "completed" and results[good].last_error is None
    for file_id in (broken, image):
        assert results[file_id].status == "failed"
        assert results[file_id].last_error.code == "server_error"
    assert "invalid JSON" in results[broken].last_error.message
    assert "image/png" in results[image].last_error.message
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.completed, counts.failed, counts.total) == (1, 2, 3)
    failed = client.vector_stores.files.list(vector_store_id=store.id, filter="failed")
    assert {f.id for f in failed.data} == {broken, image}


def test_static_chunking_makes_overlapping_windows(client, server):
    text = prose("chunking", 60)
    file_id = upload(client, "long.txt", text)
    store = client.vector_stores.create(name="static")
    attached = client.vector_stores.files.create(
        vector_store_id=store.id, file_id=file_id,
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 30}})
    assert attached.status == "completed"
    assert attached.chunking_strategy.static.max_chunk_size_tokens == 100
    chunks = chunk_texts(server, store.id, file_id)
    assert len(chunks) > 3
    # Each chunk is a slice of the original text, and neighbours share their overlap.
    assert all(chunk in text for chunk in chunks)
    assert chunks[0].startswith("Sentence 0") and text.endswith(chunks[-1])
    for before, after in itertools.pairwise(chunks):
        assert after.split()[0] in before.split()[-12:]
    for static in ({"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 10},
                   {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150}):
        with pytest.raises(openai.BadRequestError) as info:
            client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id,
                                              chunking_strategy={"type": "static", "static": static})
        assert "chunk" in detail(info.value)


@pytest.fixture(scope="module")
def searchable(server):
    """A store of three one-chunk files with attributes, shared by the search tests."""
    client = connect(server)
    docs = {
        "apples.txt": ("Apples grow on trees in orchards.", {"kind": "fruit", "year": 2020}),
        "carrots.txt": ("Carrots grow under the ground in gardens.", {"kind": "vegetable", "year": 2021}),
        "pears.txt": ("Pears ripen slowly after picking.", {"kind": "fruit", "year": 2022, "sweet": True}),
    }
    store = client.vector_stores.create(name="search")
    ids = {}
    for name, (text, attributes) in docs.items():
        ids[name] = upload(client, name, text)
        attached = client.vector_stores.files.create(vector_store_id=store.id, file_id=ids[name],
                                                     attributes=attributes)
        assert attached.status == "completed" and attached.attributes == attributes
    return store.id, ids, docs


def search(client, store_id, query, **kwargs):
    extra = {key: kwargs.pop(key) for key in ("search_mode",) if key in kwargs}
    return client.vector_stores.search(vector_store_id=store_id, query=query, extra_body=extra, **kwargs).data


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_search_modes_find_the_file(client, searchable, mode):
    store_id, ids, docs = searchable
    text, attributes = docs["carrots.txt"]
    results = search(client, store_id, text, search_mode=mode)
    top = results[0]
    assert (top.file_id, top.filename, top.attributes) == (ids["carrots.txt"], "carrots.txt", attributes)
    assert [c.text for c in top.content] == [text] and [c.type for c in top.content] == ["text"]
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert top.score == max(r.score for r in results)
    if mode != "keyword":
        assert top.score > 0.99  # the query is the chunk itself
    if mode == "keyword":
        # Only chunks that contain a query word; "carrots" and "gardens" are in one file.
        assert {r.file_id for r in search(client, store_id, "gardens carrots", search_mode=mode)} == {
            ids["carrots.txt"]}


def test_search_filters_limits_and_thresholds(client, searchable):
    store_id, _, docs = searchable

    def found(**kwargs):
        return {r.filename for r in search(client, store_id, "grow ripen trees ground", **kwargs)}

    everything = found(search_mode="keyword")
    assert everything == set(docs)
    assert found(search_mode="keyword", filters={"type": "eq", "key": "kind", "value": "fruit"}) == {
        "apples.txt", "pears.txt"}
    assert found(search_mode="vector", filters={"type": "gte", "key": "year", "value": 2021}) == {
        "carrots.txt", "pears.txt"}
    assert found(search_mode="hybrid", filters={"type": "lt", "key": "year", "value": 2020.5}) == {"apples.txt"}
    assert found(filters={"type": "in", "key": "kind", "value": ["vegetable"]}) == {"carrots.txt"}
    assert found(filters={"type": "and", "filters": [{"type": "eq", "key": "kind", "value": "fruit"},
                                                     {"type": "ne", "key": "year", "value": 2020}]}) == {"pears.txt"}
    assert found(filters={"type": "or", "filters": [{"type": "eq", "key": "sweet", "value": True},
                                                    {"type": "eq", "key": "year", "value": 2021}]}) == {
        "carrots.txt", "pears.txt"}
    assert len(search(client, store_id, "grow", max_num_results=1)) == 1
    exact = docs["pears.txt"][0]
    strict = search(client, store_id, exact, ranking_options={"score_threshold": 0.999})
    assert [r.filename for r in strict] == ["pears.txt"]
    # A list of queries is searched as one; rewrite_query is accepted.
    page = client.vector_stores.search(vector_store_id=store_id, query=["Pears ripen", "after picking"],
                                       rewrite_query=True, extra_body={"search_mode": "keyword"})
    assert page.search_query == "Pears ripen after picking"
    assert page.data[0].filename == "pears.txt"
    for bad in ({"search_mode": "fuzzy"}, {"max_num_results": 51}, {"filters": {"type": "eq", "key": "kind"}},
                {"ranking_options": {"ranker": "magic"}, "search_mode": "hybrid"}):
        with pytest.raises(openai.BadRequestError):
            search(client, store_id, "x", **bad)


def test_updated_attributes_are_what_filters_see(client, server):
    file_id = upload(client, "tagged.txt", "A note about herons.")
    store = client.vector_stores.create(name="attributes")
    client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id, attributes={"tag": "old"})
    updated = client.vector_stores.files.update(vector_store_id=store.id, file_id=file_id,
                                                attributes={"tag": "new", "rank": 2})
    assert updated.attributes == {"tag": "new", "rank": 2}

    def tags(value):
        return [r.attributes for r in search(client, store.id, "herons", search_mode="keyword",
                                             filters={"type": "eq", "key": "tag", "value": value})]

    assert tags("old") == []
    assert tags("new") == [{"tag": "new", "rank": 2}]
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.files.update(vector_store_id=store.id, file_id=file_id,
                                          attributes={"nested": {"no": 1}})


def test_batch_indexes_in_the_background_with_counts(client):
    ids = [upload(client, f"b{i}.txt", prose(f"batch file {i}", 20)) for i in range(5)]
    store = client.vector_stores.create(name="batch")
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=ids + ids[:1],
                                                     attributes={"source": "batch"})
    assert batch.id.startswith("vsfb_") and batch.vector_store_id == store.id
    assert batch.file_counts.total == 5
    done = settled_batch(client, store.id, batch.id)
    assert done.status == "completed"
    assert (done.file_counts.completed, done.file_counts.total) == (5, 5)
    listed = client.vector_stores.file_batches.list_files(batch_id=batch.id, vector_store_id=store.id, limit=100)
    assert {f.id for f in listed.data} == set(ids)
    assert all(f.attributes == {"source": "batch"} for f in listed.data)
    assert client.vector_stores.file_batches.list_files(batch_id=batch.id, vector_store_id=store.id,
                                                        filter="failed").data == []
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 5
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.file_batches.cancel(batch_id=batch.id, vector_store_id=store.id)
    failed = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=["file-nope"])
    assert failed.status == "failed" and (failed.file_counts.failed, failed.file_counts.total) == (1, 1)
    (entry,) = client.vector_stores.file_batches.list_files(batch_id=failed.id, vector_store_id=store.id).data
    assert entry.id == "file-nope" and entry.status == "failed" and "not found" in entry.last_error.message


def test_cancel_stops_files_not_yet_started(client, server):
    ids = [upload(client, f"c{i}.txt", prose(f"cancelled file {i}", 150)) for i in range(12)]
    store = client.vector_stores.create(name="cancel")
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=ids)
    cancelled = client.vector_stores.file_batches.cancel(batch_id=batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    assert cancelled.file_counts.cancelled >= 1
    done = settled_batch(client, store.id, batch.id)
    counts = done.file_counts
    assert done.status == "cancelled"
    assert counts.cancelled >= 1 and counts.completed + counts.cancelled == 12
    for f in client.vector_stores.file_batches.list_files(batch_id=batch.id, vector_store_id=store.id,
                                                          filter="cancelled", limit=100).data:
        assert chunk_texts(server, store.id, f.id) == []
    assert client.vector_stores.retrieve(store.id).status == "completed"


def test_detached_file_leaves_search_and_keeps_its_upload(client, server):
    file_id = upload(client, "gone.txt", "Kingfishers dive for fish.")
    store = client.vector_stores.create(name="detach", file_ids=[file_id])
    assert [r.file_id for r in search(client, store.id, "kingfishers", search_mode="keyword")] == [file_id]
    deleted = client.vector_stores.files.delete(vector_store_id=store.id, file_id=file_id)
    assert (deleted.id, deleted.deleted) == (file_id, True)
    assert search(client, store.id, "kingfishers", search_mode="keyword") == []
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(vector_store_id=store.id, file_id=file_id)
    assert client.files.retrieve(file_id).filename == "gone.txt"
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0


def test_unknown_store_is_400_and_unknown_file_404(client, server):
    file_id = upload(client, "x.txt", "x")
    calls = [
        lambda: client.vector_stores.retrieve("vs_nope"),
        lambda: client.vector_stores.update("vs_nope", name="x"),
        lambda: client.vector_stores.delete("vs_nope"),
        lambda: client.vector_stores.search(vector_store_id="vs_nope", query="x"),
        lambda: client.vector_stores.files.create(vector_store_id="vs_nope", file_id=file_id),
        lambda: client.vector_stores.files.list(vector_store_id="vs_nope"),
        lambda: client.vector_stores.file_batches.create(vector_store_id="vs_nope", file_ids=[file_id]),
    ]
    for call in calls:
        with pytest.raises(openai.BadRequestError) as info:
            call()
        assert detail(info.value) == "Invalid value: Vector store 'vs_nope' not found"
    store = client.vector_stores.create(name="ids")
    for call in (lambda: client.vector_stores.files.create(vector_store_id=store.id, file_id="file-nope"),
                 lambda: client.vector_stores.files.retrieve(vector_store_id=store.id, file_id=file_id),
                 lambda: client.vector_stores.files.delete(vector_store_id=store.id, file_id=file_id),
                 lambda: client.vector_stores.file_batches.retrieve(batch_id="vsfb_nope", vector_store_id=store.id)):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert "not found" in detail(info.value)
    url = f"{server.url}/v1/vector_stores/{store.id}/files/{file_id}/content"
    assert httpx.get(url).status_code == 404


def test_concurrent_attaches_lose_nothing(client, server):
    texts = {f"par{i}.txt": f"Parallel document {i} mentions token{i}x only." for i in range(8)}
    ids = {name: upload(client, name, text) for name, text in texts.items()}
    store = client.vector_stores.create(name="concurrent")

    def attach(name: str):
        # One client per thread, as separate processes would be.
        return connect(server).vector_stores.files.create(vector_store_id=store.id, file_id=ids[name],
                                                          attributes={"name": name})

    with concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
        results = list(pool.map(attach, texts))
    assert all(r.status == "completed" for r in results)
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.completed, counts.total) == (8, 8)
    for i, (name, text) in enumerate(texts.items()):
        assert chunk_texts(server, store.id, ids[name]) == [text]
        hits = search(client, store.id, f"token{i}x", search_mode="keyword")
        assert [(h.file_id, h.attributes) for h in hits] == [(ids[name], {"name": name})]


@pytest.mark.parametrize("mode", MODES)
def test_restart_keeps_everything(mode, request, tmp_path, tiny_embed_gguf):
    server = Server(tmp_path, config=tiny_config(tiny_embed_gguf, chroma_url_for(request, mode))).start()
    try:
        client = connect(server)
        file_id = upload(client, "keep.md", "# Keep\n\nHerons stand still in shallow water.")
        store = client.vector_stores.create(name="kept", file_ids=[file_id], metadata={"k": "v"})
        client.vector_stores.files.update(vector_store_id=store.id, file_id=file_id, attributes={"a": 1})
        before = search(client, store.id, "herons", search_mode="hybrid")
    finally:
        server.stop()
    server = Server(tmp_path, config=server.config, port=server.port).start()
    try:
        after = client.vector_stores.retrieve(store.id)
        assert (after.name, after.metadata, after.file_counts.completed) == ("kept", {"k": "v"}, 1)
        assert client.files.content(file_id).content == b"# Keep\n\nHerons stand still in shallow water."
        assert client.vector_stores.files.retrieve(vector_store_id=store.id, file_id=file_id).attributes == {"a": 1}
        again = search(client, store.id, "herons", search_mode="hybrid")
        assert [r.model_dump() for r in again] == [r.model_dump() for r in before]
    finally:
        server.stop()
    assert not server.mismatches(), "\n".join(server.mismatches())
