"""The specs as everything downstream sees them: upstream plus overlays, valid, and named as we serve them."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from codegen.specs import (
    SPEC_NAMES,
    SPECS_DIR,
    SpecInvalid,
    load_spec,
    spec_errors,
    stale_shared_actions,
    validate_spec,
)

METHODS = ("get", "put", "post", "delete", "patch")

# Upstream documents are kept byte-for-byte; every change to them belongs in specs/overlays/.
UPSTREAM_SHA256 = {
    "llama-stack-stable.yaml": "85799c27ebcbfeb051c56feaa1e081f5b2816dbb09cfbd99c9cce47c98e8bcd0",
    "llama-stack-experimental.yaml": "7e4dc7779890c486600ef50e982dc6f214321ece1d743434edb4dc5005b4eee3",
    "llama-stack-deprecated.yaml": "9aaf014e504bc03bb86c5cee6638fe9094a008ee82a29ba12af667d83c355443",
    "dell-pro-ai-studio.yaml": "35fa3109ad6f1f3f66898d453846f49aa934a2abe9dd3ac4d261f30a7c57a06f",
    "upstream/llama-stack-inference-completion.operation.json":
        "0efd2e72118b5838af7ad73629b800f21ca6893b796c0e503bdd75ef36a2c787",
}

# The stable and experimental documents share these with the deprecated one (the same
# operation at /v1/X for /v1/openai/v1/X, at /v1alpha|v1beta/X for /v1/X).
OPENAI_IDS = {
    "list_chat_completions", "openai_chat_completion", "get_chat_completion", "delete_chat_completion",
    "openai_completion", "openai_embeddings", "openai_list_files", "openai_upload_file", "openai_retrieve_file", "openai_delete_file",
    "openai_retrieve_file_content", "run_moderation", "list_openai_responses", "create_openai_response",
    "get_openai_response", "delete_openai_response", "list_openai_response_input_items",
    "openai_list_vector_stores", "openai_create_vector_store", "openai_retrieve_vector_store",
    "openai_update_vector_store", "openai_delete_vector_store", "openai_create_vector_store_file_batch",
    "openai_retrieve_vector_store_file_batch", "openai_cancel_vector_store_file_batch",
    "openai_list_files_in_vector_store_file_batch", "openai_list_files_in_vector_store",
    "openai_attach_file_to_vector_store", "openai_retrieve_vector_store_file", "openai_update_vector_store_file",
    "openai_delete_vector_store_file", "openai_retrieve_vector_store_file_contents", "openai_search_vector_store",
}
EXPERIMENTAL_IDS = {
    "list_agents", "create_agent", "get_agent", "delete_agent", "create_agent_session", "get_agents_session",
    "delete_agents_session", "create_agent_turn", "get_agents_turn", "resume_agent_turn", "get_agents_step",
    "list_agent_sessions", "append_rows", "iterrows", "list_datasets", "register_dataset", "get_dataset",
    "unregister_dataset", "list_benchmarks", "register_benchmark", "get_benchmark", "unregister_benchmark",
    "evaluate_rows", "run_eval", "job_status", "job_cancel", "job_result", "get_training_job_artifacts",
    "cancel_training_job", "get_training_job_status", "get_training_jobs", "preference_optimize",
    "supervised_fine_tune", "query_metrics", "query_spans", "save_spans_to_dataset", "get_span_tree",
    "query_traces", "get_trace", "get_span",
}

OPERATION_IDS = {
    "llama-stack-stable": OPENAI_IDS | {
        "health", "version", "list_routes", "list_providers", "inspect_provider", "list_models", "register_model",
        "get_model", "unregister_model", "list_prompts", "create_prompt", "get_prompt", "update_prompt",
        "delete_prompt", "set_default_version", "list_prompt_versions", "run_shield", "list_scoring_functions",
        "register_scoring_function", "get_scoring_function", "unregister_scoring_function", "score",
        "score_batch", "list_shields", "register_shield", "get_shield", "unregister_shield",
        "synthetic_data_generate", "log_event", "invoke_tool", "list_runtime_tools", "rag_tool_insert",
        "rag_tool_query", "list_tool_groups", "register_tool_group", "get_tool_group", "unregister_toolgroup",
        "list_tools", "get_tool", "list_vector_dbs", "register_vector_db", "get_vector_db", "unregister_vector_db",
        "insert_chunks", "query_chunks",
    },
    "llama-stack-experimental": EXPERIMENTAL_IDS | {"rerank"},
    "llama-stack-deprecated": {
        "list_agents", "create_agent", "get_agent", "delete_agent", "create_agent_session", "get_agents_session",
        "delete_agents_session", "create_agent_turn", "get_agents_turn", "resume_agent_turn", "get_agents_step",
        "list_agent_sessions", "append_rows", "iterrows", "list_datasets", "register_dataset", "get_dataset",
        "unregister_dataset", "list_benchmarks", "register_benchmark", "get_benchmark", "unregister_benchmark",
        "evaluate_rows", "run_eval", "job_status", "job_cancel", "job_result", "list_chat_completions",
        "openai_chat_completion", "get_chat_completion", "delete_chat_completion", "openai_completion",
        "openai_embeddings",
        "openai_list_files", "openai_upload_file", "openai_retrieve_file", "openai_delete_file",
        "openai_retrieve_file_content", "openai_list_models", "run_moderation", "list_openai_responses",
        "create_openai_response", "get_openai_response", "delete_openai_response",
        "list_openai_response_input_items", "openai_list_vector_stores", "openai_create_vector_store",
        "openai_retrieve_vector_store", "openai_update_vector_store", "openai_delete_vector_store",
        "openai_create_vector_store_file_batch", "openai_retrieve_vector_store_file_batch",
        "openai_cancel_vector_store_file_batch", "openai_list_files_in_vector_store_file_batch",
        "openai_list_files_in_vector_store", "openai_attach_file_to_vector_store",
        "openai_retrieve_vector_store_file", "openai_update_vector_store_file", "openai_delete_vector_store_file",
        "openai_retrieve_vector_store_file_contents", "openai_search_vector_store", "get_training_job_artifacts",
        "cancel_training_job", "get_training_job_status", "get_training_jobs", "preference_optimize",
        "supervised_fine_tune", "query_metrics", "query_spans", "save_spans_to_dataset", "get_span_tree",
        "query_traces", "get_trace", "get_span",
    },
    "llama-stack-inference": {"completion", "chat_completion", "legacy_embeddings"},
    "dell-pro-ai-studio": {
        "dell_list_models", "dell_retrieve_model", "dell_create_transcription", "dell_create_translation",
        "dell_create_chat_completion", "dell_create_embedding", "dell_create_image_variation",
        "dell_llamastack_chat_completion", "dell_performance",
    },
}

# operationId -> (JSON answer schema, SSE event schema) of each operation that can stream.
STREAMING = {
    "llama-stack-stable": {
        "openai_chat_completion": ("OpenAIChatCompletion", "OpenAIChatCompletionChunk"),
        "openai_completion": ("OpenAICompletion", "OpenAICompletion"),
        "create_openai_response": ("OpenAIResponseObject", "OpenAIResponseObjectStream"),
    },
    "llama-stack-experimental": {
        "create_agent_turn": ("Turn", "AgentTurnResponseStreamChunk"),
        "resume_agent_turn": ("Turn", "AgentTurnResponseStreamChunk"),
    },
    "llama-stack-deprecated": {
        "openai_chat_completion": ("OpenAIChatCompletion", "OpenAIChatCompletionChunk"),
        "openai_completion": ("OpenAICompletion", "OpenAICompletion"),
        "create_openai_response": ("OpenAIResponseObject", "OpenAIResponseObjectStream"),
        "create_agent_turn": ("Turn", "AgentTurnResponseStreamChunk"),
        "resume_agent_turn": ("Turn", "AgentTurnResponseStreamChunk"),
    },
    "llama-stack-inference": {
        "completion": ("CompletionResponse", "CompletionResponseStreamChunk"),
        "chat_completion": ("ChatCompletionResponse", "ChatCompletionResponseStreamChunk"),
    },
    "dell-pro-ai-studio": {
        "dell_create_chat_completion": ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse"),
        "dell_llamastack_chat_completion": ("ChatCompletionResponse", "ChatCompletionResponseStreamChunk"),
    },
}

MODULES = {
    "llama-stack-stable": {
        "Files", "Inference", "Inspect", "Models", "Prompts", "Providers", "Responses", "Safety", "Scoring",
        "ScoringFunctions", "Shields", "SyntheticDataGeneration", "Telemetry", "ToolGroups", "ToolRuntime",
        "VectorDbs", "VectorIO", "VectorStores",
    },
    "llama-stack-experimental": {
        "Agents", "Benchmarks", "DatasetIO", "Datasets", "Eval", "Inference", "PostTraining", "Telemetry",
    },
    "llama-stack-deprecated": {
        "Agents", "Benchmarks", "DatasetIO", "Datasets", "Eval", "Files", "Inference", "Models", "PostTraining",
        "Responses", "Safety", "Telemetry", "VectorStores",
    },
    "llama-stack-inference": {"Inference"},
    "dell-pro-ai-studio": {"Audio", "Images", "Inference", "Models", "Performance"},
}


@pytest.fixture(scope="module")
def specs() -> dict[str, dict[str, Any]]:
    return {name: load_spec(name) for name in SPEC_NAMES}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, item[method]) for path, item in document["paths"].items()
            for method in METHODS if method in item]


def follow(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def schema_name(schema: dict[str, Any]) -> str:
    return schema["$ref"].rsplit("/", 1)[1]


@pytest.mark.parametrize("relative", sorted(UPSTREAM_SHA256))
def test_upstream_files_are_untouched(relative: str) -> None:
    assert hashlib.sha256((SPECS_DIR / relative).read_bytes()).hexdigest() == UPSTREAM_SHA256[relative]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_is_valid_openapi_31_after_overlays(specs: dict[str, dict[str, Any]], name: str) -> None:
    assert specs[name]["openapi"].startswith("3.1")
    assert spec_errors(specs[name]) == []


def test_validate_spec_raises_with_every_error() -> None:
    broken = {"openapi": "3.1.0", "info": {"title": "x"}, "paths": {"/a": {"get": {"responses": "no"}}}}
    with pytest.raises(SpecInvalid) as caught:
        validate_spec(broken)
    assert caught.value.errors == spec_errors(broken) and caught.value.errors


def test_upstream_spec_without_overlay_is_not_valid() -> None:
    # Guards the test above: the validator does catch what our overlays fix.
    from codegen.specs import read_yaml

    assert spec_errors(read_yaml(SPECS_DIR / "llama-stack-deprecated.yaml"))
    assert spec_errors(read_yaml(SPECS_DIR / "dell-pro-ai-studio.yaml"))


def test_operation_ids_are_exactly_the_agreed_ones_and_unique(specs: dict[str, dict[str, Any]]) -> None:
    for name in SPEC_NAMES:
        ids = [op.get("operationId") for _, _, op in operations(specs[name])]
        assert None not in ids, f"{name} has an operation without operationId"
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", operation_id) for operation_id in ids)
        assert len(ids) == len(set(ids)) and set(ids) == OPERATION_IDS[name]


def test_specs_share_only_the_operations_they_both_define() -> None:
    """An operationId in two documents is one operation (one handler): the deprecated document's."""
    assert OPERATION_IDS["llama-stack-stable"] & OPERATION_IDS["llama-stack-experimental"] == set()
    assert OPERATION_IDS["llama-stack-stable"] & OPERATION_IDS["llama-stack-deprecated"] == OPENAI_IDS
    assert OPERATION_IDS["llama-stack-experimental"] & OPERATION_IDS["llama-stack-deprecated"] == EXPERIMENTAL_IDS
    others = OPERATION_IDS["llama-stack-inference"] | OPERATION_IDS["dell-pro-ai-studio"]
    assert not others & (OPERATION_IDS["llama-stack-stable"] | OPERATION_IDS["llama-stack-deprecated"])


def test_shared_overlay_actions_each_fit_some_document() -> None:
    assert stale_shared_actions() == []


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_tags_name_handler_modules_and_are_declared(specs: dict[str, dict[str, Any]], name: str) -> None:
    document = specs[name]
    used = {op["tags"][0] for _, _, op in operations(document) if len(op.get("tags", [])) == 1}
    assert used == MODULES[name], "every operation has exactly one tag, from the agreed set"
    assert all(re.fullmatch(r"[A-Za-z]+", tag) for tag in used)
    declared = {tag["name"] for tag in document.get("tags", [])}
    assert used <= declared
    for group in document.get("x-tagGroups", []):
        assert set(group["tags"]) <= declared


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_streaming_operations_declare_their_event_schema(specs: dict[str, dict[str, Any]], name: str) -> None:
    document = specs[name]
    streaming = {}
    for _, _, op in operations(document):
        if "200" not in op["responses"]:
            continue  # Dell's translation endpoint only ever answers 501
        content = follow(document, op["responses"]["200"]).get("content", {})
        if "text/event-stream" in content:
            streaming[op["operationId"]] = (schema_name(content["application/json"]["schema"]),
                                            schema_name(content["text/event-stream"]["schema"]))
    assert streaming == STREAMING[name]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_no_oas30_nullable_is_left(specs: dict[str, dict[str, Any]], name: str) -> None:
    assert "'nullable'" not in repr(specs[name])


def test_every_dell_error_answer_is_an_error_response(specs: dict[str, dict[str, Any]]) -> None:
    document = specs["dell-pro-ai-studio"]
    for path, method, op in operations(document):
        assert "default" in op["responses"], f"{method} {path}"
        for status, response in op["responses"].items():
            if status.startswith("2"):
                continue
            content = follow(document, response).get("content", {})
            assert schema_name(content["application/json"]["schema"]) == "errorResponse", f"{method} {path} {status}"
    error = document["components"]["schemas"]["errorResponse"]
    assert set(error["properties"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("name", ["llama-stack-stable", "llama-stack-experimental", "llama-stack-deprecated",
                                  "llama-stack-inference"])
def test_llama_family_errors_use_the_error_component(specs: dict[str, dict[str, Any]], name: str) -> None:
    document = specs[name]
    for path, method, op in operations(document):
        assert {"400", "500", "default"} <= set(op["responses"]), f"{method} {path}"
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                schema = follow(document, response)["content"]["application/json"]["schema"]
                assert schema_name(schema) == "Error", f"{method} {path} {status}"
    assert document["components"]["schemas"]["Error"]["additionalProperties"] is False


def test_every_ref_resolves(specs: dict[str, dict[str, Any]]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for document in specs.values():
        for ref in refs(document):
            follow(document, {"$ref": ref})  # KeyError names the dangling ref


def test_load_spec_returns_a_fresh_document_each_time() -> None:
    first = load_spec("llama-stack-inference")
    first["paths"].clear()
    assert load_spec("llama-stack-inference")["paths"]
