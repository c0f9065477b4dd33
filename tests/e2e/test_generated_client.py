"""The typed client codegen writes (generated/client/), driving a real server on the tiny GGUFs:
pydantic answers, typed SSE streams, multipart uploads, typed errors with each family's body, async."""

from __future__ import annotations

import asyncio

import pytest

from generated.client import AsyncClient, AsyncStream, Client, InvalidRequest, NotFound, Stream
from generated.models import dell_pro_ai_studio as dell
from generated.models import llama_stack_stable as stable
from tests.server import Server, served

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    yield from served(tmp_path_factory.mktemp("generated-client"), config={"models": models})


@pytest.fixture
def client(server):
    with Client(server.url, timeout=120) as client:
        yield client
    assert server.mismatches() == []


def test_answers_are_the_spec_models(client: Client) -> None:
    models = client.list_models()
    assert isinstance(models, stable.ListModelsResponse)
    assert {m.identifier for m in models.data} == {"tiny", "tiny-embed"}
    assert client.get_model(model_id="tiny").model_type == "llm"  # a spec-named enum reads as its value
    assert isinstance(client.version(), stable.VersionInfo)


def test_chat_completion_whole_and_streamed(client: Client) -> None:
    body = stable.OpenaiChatCompletionRequest(model="tiny", messages=HI, max_tokens=3)
    whole = client.openai_chat_completion(body=body)
    assert isinstance(whole, stable.OpenAIChatCompletion) and whole.choices[0].finish_reason == "length"
    stream = client.openai_chat_completion(body={"model": "tiny", "messages": HI, "max_tokens": 3, "stream": True})
    assert isinstance(stream, Stream)
    chunks = list(stream)
    assert chunks and all(isinstance(c, stable.OpenAIChatCompletionChunk) for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_dell_stream_ends_at_done_and_its_errors_carry_dell_body(client: Client) -> None:
    chunks = list(client.dell_create_chat_completion(body={"model": "tiny", "messages": HI, "max_tokens": 2,
                                                           "stream": True}))
    assert chunks and all(isinstance(c, dell.CreateChatCompletionStreamResponse) for c in chunks)
    with pytest.raises(NotFound) as caught:
        client.dell_create_chat_completion(body={"model": "no-such-model", "messages": HI})
    assert isinstance(caught.value.error, dell.ErrorResponse)
    assert "not found" in caught.value.error.message


def test_llama_stack_errors_are_typed_with_their_body(client: Client) -> None:
    with pytest.raises(NotFound) as missing:
        client.get_model(model_id="no-such-model")
    assert missing.value.status_code == 404
    assert isinstance(missing.value.error, stable.Error) and missing.value.error.status == 404
    with pytest.raises(InvalidRequest) as refused:
        client.openai_chat_completion(body={"model": "tiny", "messages": HI, "max_tokens": -1})
    assert "max_tokens" in refused.value.error.detail


def test_files_upload_list_and_content(client: Client) -> None:
    uploaded = client.openai_upload_file(body={"file": ("notes.txt", b"typed clients"), "purpose": "assistants"})
    assert isinstance(uploaded, stable.OpenAIFileObject) and uploaded.bytes == 13
    assert uploaded.id in {f.id for f in client.openai_list_files(limit=100).data}
    assert client.openai_retrieve_file_content(file_id=uploaded.id) == b"typed clients"
    client.openai_delete_file(file_id=uploaded.id)
    with pytest.raises(NotFound):
        client.openai_retrieve_file(file_id=uploaded.id)


def test_async_client(server: Server) -> None:
    async def run() -> tuple[stable.ListModelsResponse, list[stable.OpenAIChatCompletionChunk]]:
        async with AsyncClient(server.url, timeout=120) as client:
            models = await client.list_models()
            stream = await client.openai_chat_completion(
                body={"model": "tiny", "messages": HI, "max_tokens": 3, "stream": True})
            assert isinstance(stream, AsyncStream)
            return models, [chunk async for chunk in stream]

    models, chunks = asyncio.run(run())
    assert {m.identifier for m in models.data} == {"tiny", "tiny-embed"}
    assert chunks[-1].choices[0].finish_reason == "length"
    assert server.mismatches() == []
