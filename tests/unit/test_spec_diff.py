"""`ggstack spec diff` / codegen's change summary, on small hand-made spec pairs and the real documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from codegen.diff import Change, Handlers, diff_documents
from codegen.generate import changes_report
from ggstack.cli import main
from ggstack.http.docs import spec_document

HANDLER = '''
async def create_widget(body, ctx):
    return {"id": "w1", "colour": body.colour}


async def delete_widget(widget_id, ctx):
    return None
'''


def spec(**paths: Any) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": paths,
            "components": {"schemas": {
                "Widget": {"type": "object", "properties": {"id": {"type": "string"},
                                                            "size": {"type": "integer"},
                                                            "shape": {"type": "string", "enum": ["round", "square"]}}},
                "CreateWidget": {"type": "object", "required": ["name"],
                                 "properties": {"name": {"type": "string"}, "colour": {"type": "string"},
                                                "shape": {"type": "string", "enum": ["round", "square"]}}}}}}


def create(path: str = "/v1/widgets", operation_id: str = "create_widget") -> dict[str, Any]:
    return {"post": {"operationId": operation_id,
                     "requestBody": {"content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/CreateWidget"}}}},
                     "responses": {"200": {"content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Widget"}}}}}}}


def delete() -> dict[str, Any]:
    return {"delete": {"operationId": "delete_widget", "parameters": [
        {"name": "widget_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "ok"}}}}


@pytest.fixture
def handlers(tmp_path: Path) -> Handlers:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "widgets.py").write_text(HANDLER)
    return Handlers(tmp_path / "handlers")


def kinds(changes: list[Change]) -> set[tuple[str, str, bool]]:
    return {(c.kind, c.detail, c.breaking) for c in changes}


def test_same_document_has_no_changes(handlers: Handlers) -> None:
    old = spec(**{"/v1/widgets": create()})
    assert diff_documents(old, copy.deepcopy(old), handlers) == []


def test_operations_added_removed_moved_renamed(handlers: Handlers) -> None:
    old = spec(**{"/v1/widgets": create(), "/v1/widgets/{widget_id}": delete()})
    new = spec(**{"/v2/widgets": create(), "/v1/widgets/{widget_id}": {"delete": {
        **delete()["delete"], "operationId": "remove_widget"}}, "/v1/gadgets": create(operation_id="create_gadget")})
    changes = diff_documents(old, new, handlers)
    assert kinds(changes) == {("operation moved", "now POST /v2/widgets", True),
                              ("operationId renamed", "now remove_widget", True),
                              ("operation added", "", False)}
    renamed = next(c for c in changes if c.kind == "operationId renamed")
    assert renamed.handlers == ("handlers/widgets.py::delete_widget",)


def test_operation_removed_names_its_handler(handlers: Handlers) -> None:
    old = spec(**{"/v1/widgets": create(), "/v1/widgets/{widget_id}": delete()})
    new = spec(**{"/v1/widgets": create()})
    [change] = diff_documents(old, new, handlers)
    assert (change.kind, change.breaking, change.handlers) == \
        ("operation removed", True, ("handlers/widgets.py::delete_widget",))


def test_request_fields_added_removed_newly_required(handlers: Handlers) -> None:
    old = spec(**{"/v1/widgets": create()})
    new = copy.deepcopy(old)
    body = new["components"]["schemas"]["CreateWidget"]
    del body["properties"]["colour"]
    body["properties"]["label"] = {"type": "string"}
    body["properties"]["count"] = {"type": "integer"}
    body["required"] = ["name", "shape", "count"]
    changes = diff_documents(old, new, handlers)
    assert kinds(changes) == {("request field removed", "body.colour", True),
                              ("request field added", "body.label", False),
                              ("request field added", "body.count (required)", True),
                              ("request field newly required", "body.shape", True)}
    removed = next(c for c in changes if c.kind == "request field removed")
    assert removed.handlers == ("handlers/widgets.py::create_widget uses 'colour'",)


def test_enum_values_removed_and_response_fields(handlers: Handlers) -> None:
    old = spec(**{"/v1/widgets": create()})
    new = copy.deepcopy(old)
    new["components"]["schemas"]["CreateWidget"]["properties"]["shape"]["enum"] = ["round", "oval"]
    widget = new["components"]["schemas"]["Widget"]["properties"]
    del widget["id"]
    widget["size"] = {"type": "string"}
    changes = diff_documents(old, new, handlers)
    assert kinds(changes) == {("enum values removed", "body.shape: 'square'", True),
                              ("enum values removed", "'square'", True),
                              ("response field removed", "id", True),
                              ("response field retyped", "size: integer -> string", True)}
    removed = next(c for c in changes if c.kind == "response field removed")
    assert removed.handlers == ("handlers/widgets.py::create_widget uses 'id'",)


def test_added_optional_field_is_not_breaking(handlers: Handlers) -> None:
    old = spec(**{"/v1/widgets": create()})
    new = copy.deepcopy(old)
    new["paths"]["/v1/widgets"]["post"]["parameters"] = [{"name": "dry_run", "in": "query",
                                                           "schema": {"type": "boolean"}}]
    assert kinds(diff_documents(old, new, handlers)) == {("request field added", "query.dry_run", False)}


def test_deprecated_to_stable_llama_stack(capsys) -> None:
    """The two documents share 33 operations, moved from /v1/openai/v1 to /v1; the agents left for
    the experimental document, so their handlers are named."""
    assert main(["spec", "diff", "llama-stack-deprecated", "llama-stack-stable", "--check"]) == 1
    out = capsys.readouterr().out
    assert ("BREAKING operation moved: POST /v1/openai/v1/chat/completions (openai_chat_completion): "
            "now POST /v1/chat/completions") in out
    assert out.count("operation moved") == 33
    assert "BREAKING operation removed: POST /v1/agents (create_agent)\n" \
           "             affects handlers/agents/resources.py::create_agent" in out
    assert "ok       operation added: GET /v1/models (list_models)" in out
    assert main(["spec", "diff", "llama-stack-deprecated", "llama-stack-stable", "--check",
                 "--allow-breaking"]) == 0


def test_files_and_check_exit_codes(tmp_path: Path, capsys) -> None:
    old = spec(**{"/v1/widgets": create()})
    new = copy.deepcopy(old)
    new["paths"]["/v1/widgets"]["post"]["parameters"] = [{"name": "dry_run", "in": "query",
                                                           "schema": {"type": "boolean"}}]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert main(["spec", "diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--check"]) == 0
    assert "old.json -> new.json: 1 change(s), 0 breaking" in capsys.readouterr().out
    assert main(["spec", "diff", str(tmp_path / "new.json"), str(tmp_path / "old.json"), "--check"]) == 1
    assert main(["spec", "diff", str(tmp_path / "missing.json"), str(tmp_path / "old.json")]) == 2


def test_codegen_report_names_each_document() -> None:
    stable = spec_document("llama-stack-stable")
    changed = copy.deepcopy(stable)
    del changed["paths"]["/v1/version"]
    report = changes_report({"llama-stack-stable": stable}, {"llama-stack-stable": changed})
    assert report.startswith("llama-stack-stable: 1 change(s), 1 breaking")
    assert "operation removed: GET /v1/version (version)" in report
    assert "affects handlers/inspect.py::version" in report
