"""Codegen: served paths, naming, determinism and the drift check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.context import build_context, served_paths, snake
from generated.routes import OPERATIONS

ROOT = Path(__file__).resolve().parents[2]

LLAMA_SERVING = {
    "base": "", "error_shape": "llama_stack",
    "aliases": [
        {"from": "/v1/openai/v1/", "to": "/v1/", "except_operations": ["openai_list_models"]},
        {"from": "/v1/", "to": "/v1alpha/", "tags": ["Agents"]},
    ],
}


def test_openai_paths_are_also_served_without_the_openai_prefix() -> None:
    assert served_paths("/v1/openai/v1/files", "Files", "openai_list_files", LLAMA_SERVING) == (
        "/v1/openai/v1/files", "/v1/files")


def test_openai_models_list_is_not_aliased_over_the_native_list() -> None:
    assert served_paths("/v1/openai/v1/models", "Models", "openai_list_models", LLAMA_SERVING) == (
        "/v1/openai/v1/models",)


def test_tagged_alias_applies_only_to_its_tags() -> None:
    assert served_paths("/v1/agents", "Agents", "list_agents", LLAMA_SERVING) == ("/v1/agents", "/v1alpha/agents")
    assert served_paths("/v1/datasets", "Datasets", "list_datasets", LLAMA_SERVING) == ("/v1/datasets",)


def test_snake_case_module_names() -> None:
    assert snake("PostTraining") == "post_training"
    assert snake("DatasetIO") == "dataset_io"
    assert snake("VectorStores") == "vector_stores"


def test_every_operation_of_every_spec_is_in_the_route_table() -> None:
    specs = build_context()
    expected = {(s.name, op.operation_id) for s in specs for op in s.operations}
    assert {(op.spec, op.operation_id) for op in OPERATIONS} == expected
    counts = {s.name: len(s.operations) for s in specs}
    assert counts["llama-stack-deprecated"] == 74  # upstream 73 + delete_chat_completion (overlay)
    assert counts["dell-pro-ai-studio"] == 9
    assert counts["llama-stack-inference"] == 3  # completion, chat_completion + legacy_embeddings (overlay)


def test_dell_is_served_under_v1() -> None:
    dell = [op for op in OPERATIONS if op.spec == "dell-pro-ai-studio"]
    assert all(op.paths[0].startswith("/v1/") for op in dell)
    assert any(op.paths[0] == "/v1/openai/chat/completions" for op in dell)


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for name in ("specs", "codegen", "generated"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    return project


def run_check(project: Path) -> subprocess.CompletedProcess:
    code = "import sys; from codegen.generate import check; sys.exit(check())"
    return subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": os.pathsep.join([str(project), str(ROOT)]), "PATH": str(Path(sys.executable).parent)})


def test_check_passes_on_a_clean_tree_and_fails_after_a_one_line_spec_edit(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    clean = run_check(project)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    spec = project / "specs" / "llama-stack-inference.yaml"
    spec.write_text(spec.read_text() + "x-edited-by-test: true\n")
    drifted = run_check(project)
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "generated/" in drifted.stdout


def test_merged_document_is_valid_openapi() -> None:
    from codegen.specs import spec_errors
    from ggstack.http.docs import spec_document

    assert spec_errors(spec_document("merged")) == []


def test_an_invalid_overlaid_document_fails_naming_it_and_the_place():
    from codegen.validate import InvalidDocument, check_document

    document = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
                "paths": {"/x": {"get": {"responses": {"200": {"description": 5}}}}}}
    with pytest.raises(InvalidDocument) as info:
        check_document("specs/x.yaml with specs/overlays/x.yaml", document)
    message = str(info.value)
    assert message.startswith("specs/x.yaml with specs/overlays/x.yaml:") and "description" in message
    check_document("fixed", {**document, "paths": {"/x": {"get": {"responses": {"200": {"description": "ok"}}}}}})


def test_free_form_json_reaches_handlers_as_sent():
    # The specs spell "any JSON value" as a oneOf of the six types; the models keep values unchanged.
    from generated.models.llama_stack_deprecated import (
        OpenaiAttachFileToVectorStoreRequest,
        OpenaiSearchVectorStoreRequest,
    )

    attach = OpenaiAttachFileToVectorStoreRequest(file_id="f", attributes={"n": 3, "x": 2.5, "s": "3"})
    assert attach.attributes == {"n": 3, "x": 2.5, "s": "3"} and isinstance(attach.attributes["n"], int)
    search = OpenaiSearchVectorStoreRequest(query="q", filters={"type": "eq", "key": "n", "value": 3})
    assert search.filters is not None and type(search.filters["value"]) is int
