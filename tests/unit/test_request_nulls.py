"""Optional request fields take an explicit null, in every document (codegen/requests.py).

Two walks: every optional property of every object schema a JSON request body can reach must
accept null in the served document (or be a defaulted field the upstream generator had listed
as required); and every optional top-level field of every operation,
sent as null beside a minimal valid body, passes the whole request check (the spec's schema,
then the generated model), with a field that has a default getting it back.
"""

from __future__ import annotations

from typing import Any

import pytest

from codegen.requests import accepts_null
from generated.routes import OPERATIONS
from ggstack.http import schemas
from ggstack.http.docs import spec_document
from ggstack.http.operations import Operation
from ggstack.http.routing import check_against_spec, defaults_for_nulls, is_multipart, validate_body

JSON_OPERATIONS = [op for op in OPERATIONS if op.body is not None and not is_multipart(op)]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def body_schema(op: Operation) -> dict[str, Any]:
    document = spec_document(op.spec)
    media = document["paths"][op.spec_path][op.method.lower()]["requestBody"]["content"][op.body_media_type]
    return resolve(document, media["schema"])


def reachable_objects(document: dict[str, Any], schema: Any, seen: set[int]) -> list[dict[str, Any]]:
    """Every object schema under `schema`, following `$ref`s (each once)."""
    if not isinstance(schema, dict) or id(schema) in seen:
        return []
    seen.add(id(schema))
    found = [schema] if isinstance(schema.get("properties"), dict) else []
    children = [resolve(document, schema)] if "$ref" in schema else []
    children += list(schema.get("properties", {}).values()) if isinstance(schema.get("properties"), dict) else []
    children += [schema[k] for k in ("items", "additionalProperties") if isinstance(schema.get(k), dict)]
    children += [b for k in ("oneOf", "anyOf", "allOf") for b in schema.get(k, [])]
    for child in children:
        found.extend(reachable_objects(document, child, seen))
    return found


def minimal(document: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A small value `schema` accepts: required fields only, first branches, smallest sizes."""
    schema = resolve(document, schema)
    if depth > 12:
        return None
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return next(v for v in schema["enum"] if v is not None)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return minimal(document, next(b for b in schema[key] if b.get("type") != "null"), depth + 1)
    kinds = schema.get("type", "object")
    kind = next(k for k in kinds if k != "null") if isinstance(kinds, list) else kinds
    if kind == "object":
        return {name: minimal(document, schema["properties"][name], depth + 1)
                for name in schema.get("required", []) if name in schema.get("properties", {})}
    if kind == "array":
        return [minimal(document, schema.get("items", {}), depth + 1) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 0))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return {"boolean": False, "null": None}[kind]


def test_every_optional_property_of_every_request_schema_accepts_null() -> None:
    refused = []
    for op in JSON_OPERATIONS:
        document = spec_document(op.spec)
        for schema in reachable_objects(document, body_schema(op), set()):
            required = set(schema.get("required", []))
            for name, prop in schema["properties"].items():
                # A defaulted field upstream listed as required is made optional, not nullable: its
                # model says `X = default`, not `X | None`.
                if name not in required and "default" not in prop and not accepts_null(document, prop):
                    refused.append(f"{op.operation_id}: {schema.get('title', '?')}.{name}")
    assert refused == []


#: What `minimal` cannot build: a registered scoring function must name what runs it (an if/then);
#: a message needs its `role` to pick one branch of the message oneOf (a chat is never empty).
CROSS_FIELD_MINIMAL = {"register_scoring_function": {"scoring_fn_id": "equality"},
                       "dell_llamastack_chat_completion": {"messages": [{"role": "user", "content": "x"}]}}


@pytest.mark.parametrize("op", JSON_OPERATIONS, ids=lambda op: op.operation_id)
def test_each_optional_body_field_sent_as_null_passes_the_request_check(op: Operation) -> None:
    document = spec_document(op.spec)
    schema = body_schema(op)
    base = {**minimal(document, schema), **CROSS_FIELD_MINIMAL.get(op.operation_id, {})}
    validator = schemas.validator(op.spec, schemas.request_body_pointer(op.spec, op.spec_path, op.method,
                                                                         op.body_media_type))
    assert schemas.first_problem(validator, base) is None, "the minimal body itself is refused"
    optional = [name for name in schema.get("properties", {}) if name not in schema.get("required", [])]
    for name in optional:
        body = {**base, name: None}
        check_against_spec(op, body)
        model = validate_body(op, body)
        attr, field = next((attr, f) for attr, f in type(model).model_fields.items() if (f.alias or attr) == name)
        if field.default is not None and not field.is_required():
            assert model.__dict__[attr] == field.get_default(call_default_factory=True, validated_data={}), name


def test_a_null_for_a_defaulted_field_reads_as_its_default() -> None:
    from generated.models.llama_stack_deprecated import CreateOpenaiResponseRequest

    body = {"model": "m", "input": "hi", "tools": [{"type": "file_search", "vector_store_ids": ["vs"],
                                                     "max_num_results": None}]}
    model = defaults_for_nulls(CreateOpenaiResponseRequest.model_validate(body))
    assert model.tools[0].max_num_results == 10
