"""Stored chat completions can be kept out (`store: false`), deleted, and bounded in time."""

from __future__ import annotations

import anyio
import httpx
import openai
import pytest

from ggstack.inference import stored_chat
from ggstack.stores.sql import SqlMetadataStore
from tests.server import Server, served

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf):
    config = {"models": [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"}]}
    yield from served(tmp_path_factory.mktemp("stored-chat"), config=config)


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1/openai/v1", api_key="x", max_retries=0)


def test_delete_removes_a_stored_completion(server):
    sdk = client(server)
    done = sdk.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)
    assert sdk.chat.completions.retrieve(done.id).id == done.id
    deleted = sdk.chat.completions.delete(done.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (done.id, "chat.completion.deleted", True)
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.retrieve(done.id)
    assert done.id not in [c.id for c in sdk.chat.completions.list()]
    again = httpx.delete(f"{server.url}/v1/chat/completions/{done.id}")
    assert again.status_code == 400 and again.json()["detail"].startswith("Invalid value")


def test_store_false_keeps_nothing(server):
    sdk = client(server)
    done = sdk.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2, store=False)
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.retrieve(done.id)
    streamed = sdk.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2, store=False, stream=True)
    ids = {chunk.id for chunk in streamed}
    assert all(httpx.get(f"{server.url}/v1/chat/completions/{i}").status_code == 400 for i in ids)


def test_retention_zero_stores_nothing(tmp_path, tiny_chat_gguf):
    config = {"chat_completions_retention_days": 0,
              "models": [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"}]}
    server = Server(tmp_path, config=config).start()
    try:
        done = client(server).chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)
        assert httpx.get(f"{server.url}/v1/chat/completions/{done.id}").status_code == 400
        assert httpx.get(f"{server.url}/v1/chat/completions").json()["data"] == []
    finally:
        server.stop()


def test_completions_past_retention_are_purged_and_never_shown(tmp_path):
    store = SqlMetadataStore.open(f"sqlite:///{tmp_path / 'meta.db'}")

    async def scenario() -> None:
        old = {"id": "chatcmpl-old", "created": 1000, "model": "m", "object": "chat.completion", "choices": []}
        await stored_chat.store_chat_completion(store, old, HELLO)
        await stored_chat.store_chat_completion(store, {**old, "id": "chatcmpl-old2", "created": 2000}, HELLO)
        fresh = {**old, "id": "chatcmpl-new", "created": 4_000_000_000}  # in 2096
        await stored_chat.store_chat_completion(store, fresh, HELLO, retention_days=30)
        assert await store.get(stored_chat.KIND, "chatcmpl-old") is None
        assert await store.count(stored_chat.KIND) == 1
        with pytest.raises(stored_chat.UnknownIdError):
            await stored_chat.find_chat_completion(store, "chatcmpl-old2", retention_days=30)

    try:
        anyio.run(scenario)
    finally:
        store.close()
