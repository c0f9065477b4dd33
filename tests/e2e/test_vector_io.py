"""Vector DBs and vector-io through llama-stack-client 0.2.23, and the same data through the
openai SDK's vector stores: a vector DB is a vector store (same id, same Chroma collection).

The tiny embedding model's vectors are random but deterministic, so a query equal to a
chunk's whole text finds that chunk with cosine 1; keyword search checks real words.
"""

from __future__ import annotations

import llama_stack_client
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.e2e.test_vector_stores import connect, tiny_config, upload, wait_until
from tests.server import Server, served

DIMENSION = 32  # the tiny BERT GGUF's
TEXTS = ("Saturn has rings of ice and rock.", "Basil grows well in warm sunny windows.",
         "The harbour bell rang twice at dawn.")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_embed_gguf) -> Server:
    yield from served(tmp_path_factory.mktemp("vector_io"), config=tiny_config(tiny_embed_gguf))


@pytest.fixture(scope="module")
def client(server: Server) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, max_retries=0)


@pytest.fixture(scope="module")
def notes(client: LlamaStackClient) -> str:
    """A vector DB holding TEXTS (document n<i>), one with a client chunk id, one with its own embedding."""
    client.vector_dbs.register(vector_db_id="notes", embedding_model="emb", embedding_dimension=DIMENSION,
                               vector_db_name="Notes")
    chunks = [{"content": text, "metadata": {"document_id": f"n{i}", "topic": f"t{i}", "tags": ["a", i]}}
              for i, text in enumerate(TEXTS)]
    chunks[1]["chunk_metadata"] = {"chunk_id": "basil-1", "document_id": "n1"}
    chunks.append({"content": [{"type": "text", "text": "precomputed"}], "metadata": {"document_id": "pre"},
                   "embedding": [1.0] + [0.0] * (DIMENSION - 1), "chunk_metadata": {"chunk_id": "pre-1"}})
    client.vector_io.insert(vector_db_id="notes", chunks=chunks)
    return "notes"


def test_register_list_get_and_reregister(client: LlamaStackClient, notes: str) -> None:
    got = client.vector_dbs.retrieve(notes)
    assert (got.identifier, got.embedding_model, got.embedding_dimension, got.vector_db_name) == \
        ("notes", "emb", DIMENSION, "Notes")
    assert got.provider_id == "chromadb" and got.type == "vector_db"
    assert notes in [db.identifier for db in client.vector_dbs.list()]
    again = client.vector_dbs.register(vector_db_id=notes, embedding_model="emb")
    assert again.identifier == notes
    with pytest.raises(llama_stack_client.BadRequestError, match="embedding_dimension 7"):
        client.vector_dbs.register(vector_db_id="other", embedding_model="emb", embedding_dimension=7)
    with pytest.raises(llama_stack_client.NotFoundError):
        client.vector_dbs.register(vector_db_id="other", embedding_model="no-such-model")


def test_query_finds_the_chunk_with_its_metadata_and_id(client: LlamaStackClient, notes: str) -> None:
    answer = client.vector_io.query(vector_db_id=notes, query=TEXTS[1], params={"max_chunks": 2})
    assert len(answer.chunks) == 2 and answer.scores[0] == pytest.approx(1.0, abs=1e-3)
    first = answer.chunks[0]
    assert first.content == TEXTS[1] and first.metadata == {"document_id": "n1", "topic": "t1", "tags": ["a", 1]}
    assert first.stored_chunk_id == "basil-1" and first.chunk_metadata.chunk_id == "basil-1"
    assert answer.scores == sorted(answer.scores, reverse=True)


def test_score_threshold_mode_and_ranker(client: LlamaStackClient, notes: str) -> None:
    close = client.vector_io.query(vector_db_id=notes, query=TEXTS[0], params={"score_threshold": 0.999})
    assert [c.content for c in close.chunks] == [TEXTS[0]]
    words = client.vector_io.query(vector_db_id=notes, query="harbour bell", params={"mode": "keyword"})
    assert words.chunks[0].content == TEXTS[2] and 0 < words.scores[0] < 1
    for ranker in ({"type": "rrf", "impact_factor": 10}, {"type": "weighted", "alpha": 0.3}):
        fused = client.vector_io.query(vector_db_id=notes, query=TEXTS[2],
                                       params={"mode": "hybrid", "ranker": ranker, "max_chunks": 4})
        assert fused.chunks[0].content == TEXTS[2]
    everything = client.vector_io.query(vector_db_id=notes, query="x", params={"max_chunks": 10})
    precomputed = [c for c in everything.chunks if c.stored_chunk_id == "pre-1"]
    assert [item.text for item in precomputed[0].content] == ["precomputed"]


def test_bad_queries_and_inserts_are_400_naming_the_problem(client: LlamaStackClient, notes: str) -> None:
    cases = [({"max_chunks": 0}, "max_chunks"), ({"mode": "fuzzy"}, "mode"), ({"k": 3}, "'k' was unexpected"),
             ({"ranker": {"type": "weighted", "alpha": 2}}, "ranker")]
    for params, words in cases:
        with pytest.raises(llama_stack_client.BadRequestError, match=words):
            client.vector_io.query(vector_db_id=notes, query="x", params=params)
    with pytest.raises(llama_stack_client.BadRequestError, match="3 dimensions"):
        client.vector_io.insert(vector_db_id=notes, chunks=[{"content": "x", "metadata": {}, "embedding": [1, 2, 3]}])
    with pytest.raises(llama_stack_client.BadRequestError, match="Invalid value: Vector store 'nowhere' not found"):
        client.vector_io.query(vector_db_id="nowhere", query="x")
    with pytest.raises(llama_stack_client.BadRequestError, match="only text"):
        client.vector_io.insert(vector_db_id=notes, chunks=[
            {"content": {"type": "image", "image": {"url": {"uri": "http://x/y.png"}}}, "metadata": {}}])


def test_a_vector_db_is_a_vector_store_and_back(server: Server, client: LlamaStackClient, notes: str) -> None:
    sdk = connect(server)
    store = sdk.vector_stores.retrieve(notes)
    assert store.id == notes and store.name == "Notes"
    found = sdk.vector_stores.search(notes, query=TEXTS[2], max_num_results=1)
    assert found.data[0].content[0].text == TEXTS[2] and found.data[0].attributes["topic"] == "t2"
    made = sdk.vector_stores.create(name="made-by-openai", file_ids=[upload(sdk, "moon.txt", "The moon is dusty.")])
    wait_until(lambda: sdk.vector_stores.retrieve(made.id).file_counts.completed == 1)
    assert made.id in [db.identifier for db in client.vector_dbs.list()]
    answer = client.vector_io.query(vector_db_id=made.id, query="The moon is dusty.", params={"max_chunks": 1})
    assert answer.chunks[0].content == "The moon is dusty." and answer.scores[0] == pytest.approx(1.0, abs=1e-3)


def test_provider_vector_db_id_is_kept_as_the_provider_resource_id(client: LlamaStackClient) -> None:
    """As the reference server keeps it (it was a 400 unless it equalled the id)."""
    made = client.vector_dbs.register(vector_db_id="named", embedding_model="emb", provider_vector_db_id="chroma-named")
    assert (made.identifier, made.provider_resource_id) == ("named", "chroma-named")
    assert client.vector_dbs.retrieve("named").provider_resource_id == "chroma-named"
    assert client.vector_dbs.register(vector_db_id="named", embedding_model="emb",
                                      provider_vector_db_id="chroma-named").identifier == "named"
    with pytest.raises(llama_stack_client.BadRequestError, match="provider_vector_db_id 'chroma-named'"):
        client.vector_dbs.register(vector_db_id="named", embedding_model="emb", provider_vector_db_id="other")
    plain = client.vector_dbs.register(vector_db_id="unnamed", embedding_model="emb")
    assert plain.provider_resource_id == "unnamed"
    client.vector_dbs.unregister("named")
    client.vector_dbs.unregister("unnamed")


def test_unregister_removes_the_store_too(server: Server, client: LlamaStackClient) -> None:
    client.vector_dbs.register(vector_db_id="brief", embedding_model="emb")
    client.vector_io.insert(vector_db_id="brief", chunks=[{"content": "short lived", "metadata": {}}])
    client.vector_dbs.unregister("brief")
    with pytest.raises(llama_stack_client.BadRequestError, match="not found"):
        client.vector_dbs.retrieve("brief")
    with pytest.raises(openai.BadRequestError):
        connect(server).vector_stores.retrieve("brief")
