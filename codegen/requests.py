"""Request-schema rules: what the reference server's request models accept, said in the schema.

Llama Stack generates its OpenAPI documents from pydantic models, and two facts of those models
are lost on the way, so clients that send what the models accept are refused by the schema:

- an optional field is `X | None = None`: the model takes an explicit `null` (both llama-stack-client
  and the openai SDK send `previous_response_id: null`), but the schema says only `X`;
- a field with a default (`type: Literal["message"] = "message"`) may be left out, but the
  generator lists it under `required` all the same.

`relax_request_schemas` fixes the class, not each field: every object schema a JSON request body
can reach gets its optional properties made nullable, and its defaulted properties made optional.
Schemas a request shares with a response are relaxed too; the reference answers with the same
models, so its answers may carry those nulls as well. Multipart bodies are left alone (a form
field cannot be null).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from codegen.pointers import follow, resolve_ref

NULL = {"type": "null"}
SCALAR_TYPES = ("string", "integer", "number", "boolean")
_COMBINATORS = ("oneOf", "anyOf", "allOf")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def relax_request_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (changed in place and returned) with the two rules above applied."""
    nodes = request_nodes(document)
    tags = discriminator_tags(nodes)
    for node, ref in nodes:
        if isinstance(node.get("properties"), dict):
            _relax_object(document, node, tags.get(ref) if ref else None)
    return document


def request_nodes(document: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
    """Every schema node a JSON request body reaches, once each, with the `$ref` it was reached by
    (None for inline nodes)."""
    found: list[tuple[dict[str, Any], str | None]] = []
    seen: set[str] = set()

    def visit(node: Any, ref: str | None = None) -> None:
        if not isinstance(node, dict):
            return
        found.append((node, ref))
        if "$ref" in node and node["$ref"] not in seen:
            seen.add(node["$ref"])
            visit(follow(document, node["$ref"]), node["$ref"])
        for child in _children(node):
            visit(child)

    for schema in json_body_schemas(document):
        visit(schema)
    return found


def discriminator_tags(nodes: list[tuple[dict[str, Any], str | None]]) -> dict[str, str]:
    """Schema ref -> the property that tags it in a discriminated union a request uses.

    Such a tag stays required though it has a default: pydantic's discriminated union (and the
    schema's `oneOf`, when its branches differ only by tag) needs it to tell branches apart.
    The same schema in a plain union (a Responses input message) keeps its tag required too,
    unless no request reaches a discriminated union that holds it.
    """
    tags: dict[str, str] = {}
    for node, _ in nodes:
        discriminator = node.get("discriminator")
        if isinstance(discriminator, dict):
            refs = [b["$ref"] for b in node.get("oneOf", node.get("anyOf", [])) if "$ref" in b]
            refs += list(discriminator.get("mapping", {}).values())
            tags.update({ref: discriminator["propertyName"] for ref in refs})
    return tags


def json_body_schemas(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for path_item in document.get("paths", {}).values():
        for method in _HTTP_METHODS:
            body = path_item.get(method, {}).get("requestBody")
            if body is None:
                continue
            body = resolve_ref(document, body)
            for media_type, media in body.get("content", {}).items():
                if "json" in media_type and isinstance(media.get("schema"), dict):
                    found.append(media["schema"])
    return found


def _children(schema: dict[str, Any]) -> list[Any]:
    children = list(schema.get("properties", {}).values()) if isinstance(schema.get("properties"), dict) else []
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            children.append(schema[key])
    for key in (*_COMBINATORS, "prefixItems"):
        children.extend(schema.get(key, []))
    return children


def _relax_object(document: dict[str, Any], schema: dict[str, Any], tag: str | None) -> None:
    properties: dict[str, Any] = schema["properties"]
    required = list(schema.get("required", []))
    for name, prop in properties.items():
        if name not in required and isinstance(prop, dict) and not accepts_null(document, prop):
            properties[name] = nullable(document, prop)
    # Upstream sometimes defaults a field to a value its own schema refuses (Dell's sampling
    # `strategy: "greedy"`); such a field stays required, or leaving it out would be a 500.
    defaulted = [name for name in required if name != tag and isinstance(properties.get(name), dict)
                 and "default" in properties[name] and is_valid(document, properties[name],
                                                                properties[name]["default"])]
    if defaulted:
        schema["required"] = [name for name in required if name not in defaulted]
        if not schema["required"]:
            del schema["required"]


def is_valid(document: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    """Whether `value` is valid for `schema`, whose `$ref`s point into `document`'s components."""
    root = {"components": document.get("components", {}), "allOf": [schema]}
    return Draft202012Validator(root).is_valid(value)


def accepts_null(document: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> bool:
    """Whether `null` is valid for `schema` (the keywords the specs use; `{}` takes anything)."""
    if depth > 30:
        return False
    if "$ref" in schema and not accepts_null(document, follow(document, schema["$ref"]), depth + 1):
        return False
    if "const" in schema and schema["const"] is not None:
        return False
    if "enum" in schema and None not in schema["enum"]:
        return False
    kinds = schema.get("type")
    if isinstance(kinds, str) and kinds != "null" or isinstance(kinds, list) and "null" not in kinds:
        return False
    for key in ("oneOf", "anyOf"):
        if key in schema and not any(accepts_null(document, b, depth + 1) for b in schema[key]):
            return False
    return all(accepts_null(document, b, depth + 1) for b in schema.get("allOf", []))


def nullable(document: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """`prop` that also accepts null, keeping its annotations (description, default) outside.

    A scalar type becomes a type list; anything else is wrapped in `anyOf: [prop, null]`, which
    datamodel-code-generator prints as `X | None` without losing X's own typing. A `$ref`'s
    default is lifted onto the wrapper, where the generated model still sees it.
    """
    kinds = prop.get("type")
    scalar = kinds in SCALAR_TYPES or isinstance(kinds, list) and set(kinds) <= set(SCALAR_TYPES)
    if scalar and not any(key in prop for key in ("$ref", "const", *_COMBINATORS)):
        relaxed = {**prop, "type": [*(kinds if isinstance(kinds, list) else [kinds]), "null"]}
        if "enum" in prop:
            relaxed["enum"] = [*prop["enum"], None]
        return relaxed
    annotations = {k: v for k, v in prop.items() if k in ("description", "title", "default", "deprecated", "examples")}
    if "$ref" in prop and "default" not in annotations:
        target = resolve_ref(document, prop)
        if "default" in target:
            annotations["default"] = target["default"]
    core = {k: v for k, v in prop.items() if k not in annotations}
    return {"anyOf": [core, NULL], **annotations}
