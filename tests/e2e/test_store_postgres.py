"""The whole SqlMetadataStore suite (tests/unit/test_store_sql.py) and the keyword index's segment
tests against a real PostgreSQL, and a server that keeps its metadata there."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_keyword_index import (
    test_adding_chunks_appends_segments_merged_as_a_binary_counter,  # noqa: F401 - run here on PostgreSQL
    test_taking_chunks_out_rewrites_their_terms_as_one_segment,  # noqa: F401
    test_warming_reads_the_largest_postings_first_and_changes_no_answer,  # noqa: F401
)
from tests.server import Server
from tests.unit.test_store_sql import *
from tests.unit.test_store_sql import test_an_old_database_gets_the_owner_column


@pytest.fixture
def store_url(postgres_url) -> str:
    return postgres_url


@pytest.fixture
def keyword_url(postgres_url) -> str:
    return postgres_url


# SQLite-only: it builds the old schema with the sqlite3 module.
del test_an_old_database_gets_the_owner_column


def test_a_server_keeps_its_metadata_in_postgres(tmp_path, postgres_url, tiny_embed_gguf):
    config = {"database_url": postgres_url,
              "models": [{"identifier": "emb", "path": str(tiny_embed_gguf), "model_type": "embedding"}]}
    server = Server(tmp_path / "data", config=config).start()
    try:
        uploaded = httpx.post(f"{server.url}/v1/files", files={"file": ("a.txt", b"hello")},
                              data={"purpose": "assistants"}).json()
        store = httpx.post(f"{server.url}/v1/vector_stores", json={"name": "pg", "embedding_model": "emb",
                                                                     "file_ids": [uploaded["id"]]}).json()
        assert httpx.get(f"{server.url}/v1/health").json() == {"status": "OK"}
    finally:
        server.stop()
    assert not server.mismatches(), "\n".join(server.mismatches())
    assert not (tmp_path / "data" / "ggstack.db").exists()  # nothing went to SQLite
    again = Server(tmp_path / "data", config=config).start()
    try:
        assert httpx.get(f"{again.url}/v1/files/{uploaded['id']}").json()["filename"] == "a.txt"
        assert httpx.get(f"{again.url}/v1/vector_stores/{store['id']}").json()["name"] == "pg"
    finally:
        again.stop()
