"""Remote providers: what each server flavour is sent, how model lists are read, how errors read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ggstack.core.config import Settings
from ggstack.engines.base import SamplingOptions
from ggstack.engines.remote.client import _remote_message
from ggstack.engines.remote.discovery import listed_models
from ggstack.engines.remote.engines import ChatPrompt, _StreamState, wire_message
from ggstack.engines.remote.flavours import FLAVOURS

SCHEMA = {"type": "object"}


def test_vllm_gets_guided_json_and_llama_sampling_fields_only_when_asked():
    vllm = FLAVOURS["remote::vllm"]
    options = SamplingOptions(max_tokens=5, top_k=3, json_schema=SCHEMA)
    assert vllm.constraint_fields(options) == {"guided_json": SCHEMA}
    fields = vllm.sampling_fields(options, chat=True)
    assert fields["top_k"] == 3 and "min_p" not in fields and "repetition_penalty" not in fields
    assert fields["max_tokens"] == 5


def test_plain_openai_server_gets_response_format_and_no_grammar():
    plain = FLAVOURS["remote::openai-compatible"]
    constraint = plain.constraint_fields(SamplingOptions(json_schema=SCHEMA))
    assert constraint["response_format"]["json_schema"]["schema"] == SCHEMA
    assert plain.constraint_fields(SamplingOptions(grammar='root ::= "a"')) is None
    assert "top_k" not in plain.sampling_fields(SamplingOptions(top_k=3), chat=True)


def test_logprobs_are_asked_as_each_endpoint_names_them():
    flavour = FLAVOURS["remote::llama-server"]
    chat = flavour.sampling_fields(SamplingOptions(logprobs=2), chat=True)
    assert (chat["logprobs"], chat["top_logprobs"]) == (True, 2)
    assert flavour.sampling_fields(SamplingOptions(logprobs=2), chat=False)["logprobs"] == 2


def test_model_lists_of_vllm_llama_server_and_llama_stack_are_read():
    vllm = listed_models({"data": [{"id": "meta/llama", "max_model_len": 8192}]})
    assert vllm[0].identifier == "meta/llama" and vllm[0].context_length == 8192 and vllm[0].model_type == "llm"
    server = listed_models({"data": [{"id": "m.gguf", "meta": {"n_ctx_train": 4096}}]})
    assert server[0].context_length == 4096
    native = listed_models({"data": [{"identifier": "e", "model_type": "embedding",
                                      "metadata": {"embedding_dimension": 384}},
                                     {"identifier": "whisper", "model_type": "asr"}]})
    assert [(m.identifier, m.embedding_dimension) for m in native] == [("e", 384)]


def test_remote_error_messages_are_read_from_each_shape():
    assert _remote_message(b'{"error": {"message": "bad", "code": "context_length_exceeded"}}') == (
        "bad", "context_length_exceeded")
    assert _remote_message(b'{"status": 400, "title": "Bad Request", "detail": "no"}')[0] == "no"
    assert _remote_message(b'{"object": "error", "message": "vllm says"}')[0] == "vllm says"
    assert _remote_message(b"plain text")[0] == "plain text"


def test_structured_tool_calls_come_back_as_tool_call_text():
    state = _StreamState()
    state.read({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}}]}, chat=True)
    state.read({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": ": 1}"}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}}, chat=True)
    *calls, finish = state.end()
    assert '"name": "f"' in calls[0].text and '"a": 1' in calls[0].text
    assert (finish.finish_reason, finish.prompt_tokens, finish.completion_tokens) == ("stop", 3, 4)


def test_chat_prompt_keeps_messages_and_compares_by_content():
    turn = wire_message({"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]})
    assert turn["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert ChatPrompt([turn], None) == ChatPrompt([turn], None) != ChatPrompt([turn], [{"type": "function"}])
    assert wire_message({"role": "tool", "content": "r", "tool_call_id": "c", "name": "f"}) == {
        "role": "tool", "content": "r", "tool_call_id": "c"}


def test_remote_provider_ids_must_be_distinct_and_not_an_inline_one():
    base = {"base_url": "http://h/v1"}
    with pytest.raises(ValidationError, match="taken"):
        Settings(inference_providers=[{"provider_id": "a", **base}, {"provider_id": "a", **base}])
    with pytest.raises(ValidationError, match="llama-cpp"):
        Settings(inference_providers=[{"provider_id": "llama-cpp", **base}])
