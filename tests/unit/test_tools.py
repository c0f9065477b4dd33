"""Tools without a server: argument schemas, the RAG result shape and its limits, documents, the agent history."""

from __future__ import annotations

import asyncio
import base64

import pytest

from generated.models.llama_stack_deprecated import (
    VectorStoreContent,
    VectorStoreSearchResponse,
    VectorStoreSearchResponsePage,
)
from ggstack.agents.history import session_messages
from ggstack.core.errors import InvalidValueError
from ggstack.http.errors import InvalidRequest
from ggstack.tools import rag
from ggstack.tools.definitions import from_tool_def, schema_of
from handlers.vector_stores.documents import document_bytes


def test_tool_parameters_become_a_json_schema_and_back():
    schema = schema_of([{"name": "city", "parameter_type": "string", "description": "The city", "required": True},
                        {"name": "days", "parameter_type": "int", "description": "", "required": False}])
    assert schema == {"type": "object", "properties": {"city": {"type": "string", "description": "The city"},
                                                       "days": {"type": "integer"}}, "required": ["city"]}
    tool = from_tool_def({"name": "weather", "parameters": [{"name": "city", "parameter_type": "string",
                                                             "description": "The city", "required": True}]})
    assert tool.parameters() == [{"name": "city", "parameter_type": "string", "description": "The city",
                                  "required": True}]
    assert tool.spec().parameters == tool.schema


def page(*hits: tuple[str, float, str]) -> VectorStoreSearchResponsePage:
    data = [VectorStoreSearchResponse(file_id=file_id, filename=f"{file_id}.txt", score=score,
                                      content=[VectorStoreContent(type="text", text=text)])
            for file_id, score, text in hits]
    return VectorStoreSearchResponsePage(object="vector_store.search_results.page", search_query="q", data=data,
                                         has_more=False)


def run_query(config: dict | None, pages: dict[str, VectorStoreSearchResponsePage], stores: list[str]) -> dict:
    async def search(store_id, request):
        assert request.max_num_results == (config or {}).get("max_chunks", rag.DEFAULT_MAX_CHUNKS)
        return pages[store_id]

    return asyncio.run(rag.query("what?", stores, rag.QueryConfig.from_request(config), search))


def test_knowledge_search_merges_stores_best_first_in_the_rag_result_shape():
    pages = {"a": page(("f1", 0.2, "low")), "b": page(("f2", 0.9, "high"))}
    result = run_query(None, pages, ["a", "b"])
    texts = [item["text"] for item in result["content"]]
    assert texts[0] == "knowledge_search tool found 2 chunks:\nBEGIN of knowledge_search tool results.\n"
    assert texts[1].startswith("Result 1\nContent: high\nMetadata: {'document_id': 'f2'")
    assert texts[-2] == "END of knowledge_search tool results.\n" and '"what?"' in texts[-1]
    assert result["metadata"]["chunks"] == ["high", "low"] and result["metadata"]["scores"] == [0.9, 0.2]
    assert result["metadata"]["document_ids"] == ["f2", "f1"] and result["metadata"]["vector_db_ids"] == ["b", "a"]


def test_the_context_budget_and_the_template_are_honoured():
    pages = {"a": page(("f1", 0.9, "one two three"), ("f2", 0.8, "four five six"))}
    result = run_query({"max_tokens_in_context": 4, "chunk_template": "[{index}] {chunk.content} {{x}}",
                        "max_chunks": 2}, pages, ["a"])
    assert [item["text"] for item in result["content"]][1] == "[1] one two three {x}"
    assert result["metadata"]["chunks"] == ["one two three"]  # the second would pass 4 tokens


@pytest.mark.parametrize("config, field", [
    ({"chunk_template": "{chunk.__class__}"}, "chunk_template"),
    ({"max_chunks": 0}, "max_chunks"),
    ({"mode": "fuzzy"}, "mode"),
    ({"query_generator_config": {"type": "llm"}}, "query_generator_config"),
])
def test_bad_query_configs_are_400s_naming_the_field(config, field):
    with pytest.raises(InvalidValueError) as error:
        rag.QueryConfig.from_request(config)
    assert error.value.field == f"query_config.{field}"


def test_documents_are_text_items_or_data_urls_never_fetched():
    assert document_bytes("plain text", "d") == (b"plain text", None)
    assert document_bytes([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "d") == (b"a\nb", None)
    encoded = "data:text/markdown;base64," + base64.b64encode(b"# Title").decode()
    assert document_bytes({"uri": encoded}, "d") == (b"# Title", "text/markdown")
    with pytest.raises(InvalidRequest, match="network"):
        document_bytes({"uri": "https://example.com/doc"}, "documents[0].content")


def test_history_replays_finished_turns_and_only_the_input_of_a_paused_one():
    call = {"call_id": "c1", "tool_name": "weather", "arguments": {"city": "Rome"}}
    inference = {"step_type": "inference", "model_response": {"role": "assistant", "content": "",
                                                              "stop_reason": "end_of_message", "tool_calls": [call]}}
    execution = {"step_type": "tool_execution", "tool_calls": [call],
                 "tool_responses": [{"call_id": "c1", "tool_name": "weather", "content": "Sunny"}]}
    done = {"status": "completed", "turn": {"input_messages": [{"role": "user", "content": "Weather?"}],
                                            "steps": [inference, execution]}}
    paused = {"status": "awaiting_input", "turn": {"input_messages": [{"role": "user", "content": "And Oslo?"}],
                                                   "steps": [inference]}}
    messages = session_messages("Be brief.", [done, paused])
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[2].tool_calls[0].name == "weather" and messages[3].tool_call_id == "c1"
