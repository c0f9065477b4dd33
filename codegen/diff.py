"""What changed between two versions of an OpenAPI document, and which handlers it touches.

Operations are matched by operationId, since that is what binds a handler: the same id at
another path or method is a move; an id gone while its method and path remain is a rename.
Fields are compared one level deep (request body properties, parameters, the success
response's properties), which is where a client or a handler notices a change. A change is
breaking when a client written against the old document can fail against the new one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codegen.pointers import follow

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
HANDLERS = Path(__file__).resolve().parent.parent / "handlers"


@dataclass(frozen=True)
class Change:
    kind: str
    operation: str  # "POST /v1/files (openai_upload_file)", or a schema name
    detail: str
    breaking: bool
    handlers: tuple[str, ...] = ()

    def line(self) -> str:
        mark = "BREAKING" if self.breaking else "ok      "
        text = f"{mark} {self.kind}: {self.operation}" + (f": {self.detail}" if self.detail else "")
        return text + "".join(f"\n           affects {h}" for h in self.handlers)


@dataclass(frozen=True)
class Op:
    operation_id: str
    method: str
    path: str
    node: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path} ({self.operation_id})"


@dataclass
class Handlers:
    """Handler functions in handlers/ by name, parsed (not imported), so any checkout can be read."""

    root: Path = HANDLERS
    functions: dict[str, tuple[str, ast.AST]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in sorted(self.root.rglob("*.py")) if self.root.is_dir() else ():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                    self.functions.setdefault(node.name, (str(path.relative_to(self.root.parent)), node))

    def bound(self, operation_id: str) -> tuple[str, ...]:
        found = self.functions.get(operation_id)
        return (f"{found[0]}::{operation_id}",) if found else ()

    def reading(self, operation_id: str, name: str) -> tuple[str, ...]:
        """The handler, if it reads `body.<name>` or spells `name` as a keyword or a string."""
        found = self.functions.get(operation_id)
        if not found:
            return ()
        for node in ast.walk(found[1]):
            if (isinstance(node, ast.Attribute) and node.attr == name and isinstance(node.value, ast.Name)
                    and node.value.id == "body") or (isinstance(node, ast.keyword) and node.arg == name) \
                    or (isinstance(node, ast.arg) and node.arg == name) \
                    or (isinstance(node, ast.Constant) and node.value == name):
                return (f"{found[0]}::{operation_id} uses {name!r}",)
        return ()


def operations(document: dict[str, Any]) -> dict[str, Op]:
    found = {}
    for path, item in document.get("paths", {}).items():
        for method in HTTP_METHODS:
            node = item.get(method)
            if isinstance(node, dict) and "operationId" in node:
                found[node["operationId"]] = Op(node["operationId"], method, path, node)
    return found


def deref(document: dict[str, Any], node: Any, depth: int = 0) -> dict[str, Any]:
    """A schema with its `$ref` followed and its `allOf` parts merged (properties and required)."""
    if not isinstance(node, dict) or depth > 20:
        return {}
    if "$ref" in node:
        return deref(document, follow(document, node["$ref"]), depth + 1)
    if "allOf" in node:
        merged: dict[str, Any] = {"properties": {}, "required": []}
        for part in node["allOf"]:
            part = deref(document, part, depth + 1)
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        return merged
    return node


def describe(node: Any) -> str:
    """A field's type in a word or two: a schema name, a JSON type, or a union of them."""
    if not isinstance(node, dict):
        return "any"
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    for union in ("oneOf", "anyOf"):
        if union in node:
            return " | ".join(sorted(describe(choice) for choice in node[union]))
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " | ".join(sorted(kind))
    if kind == "array":
        return f"array[{describe(node.get('items'))}]"
    return kind


def enum_values(document: dict[str, Any], node: Any) -> set[Any]:
    return {repr(value) for value in deref(document, node).get("enum", [])}


def request_fields(document: dict[str, Any], op: Op) -> tuple[dict[str, Any], set[str]]:
    """Body properties and parameters (as `query.name`), and which of them are required."""
    fields: dict[str, Any] = {}
    required: set[str] = set()
    for param in op.node.get("parameters", []):
        param = deref(document, param)
        name = f"{param.get('in')}.{param.get('name')}"
        fields[name] = param.get("schema", {})
        if param.get("required"):
            required.add(name)
    body = deref(document, op.node.get("requestBody", {}))
    for media in body.get("content", {}).values():
        schema = deref(document, media.get("schema", {}))
        fields.update({f"body.{k}": v for k, v in schema.get("properties", {}).items()})
        required |= {f"body.{k}" for k in schema.get("required", [])}
        break
    return fields, required


def response_fields(document: dict[str, Any], op: Op) -> dict[str, Any]:
    """Properties of the first 2xx JSON response."""
    for code, response in sorted(op.node.get("responses", {}).items()):
        if str(code).startswith("2"):
            content = deref(document, response).get("content", {})
            schema = deref(document, content.get("application/json", {}).get("schema", {}))
            return schema.get("properties", {})
    return {}


def diff_documents(old: dict[str, Any], new: dict[str, Any], handlers: Handlers | None = None) -> list[Change]:
    handlers = handlers or Handlers()
    before, after = operations(old), operations(new)
    changes: list[Change] = []
    by_route = {(op.method, op.path): op for op in after.values()}
    for operation_id, op in before.items():
        if operation_id in after:
            changes += diff_operation(old, new, op, after[operation_id], handlers)
            continue
        renamed = by_route.get((op.method, op.path))
        if renamed is not None and renamed.operation_id not in before:
            changes.append(Change("operationId renamed", op.label, f"now {renamed.operation_id}", True,
                                  handlers.bound(operation_id)))
        else:
            changes.append(Change("operation removed", op.label, "", True, handlers.bound(operation_id)))
    changes += diff_schema_enums(old, new)
    renamed_to = {c.detail.removeprefix("now ") for c in changes if c.kind == "operationId renamed"}
    for operation_id, op in after.items():
        if operation_id not in before and operation_id not in renamed_to:
            changes.append(Change("operation added", op.label, "", False))
    return changes


def diff_operation(old: dict[str, Any], new: dict[str, Any], was: Op, now: Op, handlers: Handlers) -> list[Change]:
    changes = []
    if (was.method, was.path) != (now.method, now.path):
        changes.append(Change("operation moved", was.label, f"now {now.method.upper()} {now.path}", True))
    old_fields, old_required = request_fields(old, was)
    new_fields, new_required = request_fields(new, now)
    for name in old_fields.keys() - new_fields.keys():
        changes.append(Change("request field removed", now.label, name, True,
                              handlers.reading(now.operation_id, name.split(".", 1)[1])))
    for name in sorted(new_fields.keys() - old_fields.keys()):
        changes.append(Change("request field added", now.label, name + (" (required)" if name in new_required else ""),
                              name in new_required))
    for name in sorted((new_required - old_required) & old_fields.keys()):
        changes.append(Change("request field newly required", now.label, name, True))
    for name in sorted(old_fields.keys() & new_fields.keys()):
        gone = enum_values(old, old_fields[name]) - enum_values(new, new_fields[name])
        if gone:
            changes.append(Change("enum values removed", now.label, f"{name}: {', '.join(sorted(gone))}", True))
    old_out, new_out = response_fields(old, was), response_fields(new, now)
    for name in sorted(old_out.keys() - new_out.keys()):
        changes.append(Change("response field removed", now.label, name, True, handlers.reading(now.operation_id, name)))
    for name in sorted(old_out.keys() & new_out.keys()):
        if describe(old_out[name]) != describe(new_out[name]):
            changes.append(Change("response field retyped", now.label,
                                  f"{name}: {describe(old_out[name])} -> {describe(new_out[name])}", True))
    return sorted(changes, key=lambda c: (c.kind, c.detail))


def diff_schema_enums(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Enum values gone from a named schema or one of its properties: a client may still send them."""
    changes = []
    before = old.get("components", {}).get("schemas", {})
    after = new.get("components", {}).get("schemas", {})
    for name in sorted(before.keys() & after.keys()):
        was, now = deref(old, before[name]), deref(new, after[name])
        places = {"": (was, now)}
        for prop in sorted(was.get("properties", {}).keys() & now.get("properties", {}).keys()):
            places[f".{prop}"] = (was["properties"][prop], now["properties"][prop])
        for suffix, (a, b) in places.items():
            gone = enum_values(old, a) - enum_values(new, b)
            if gone:
                changes.append(Change("enum values removed", f"schema {name}{suffix}", ", ".join(sorted(gone)), True))
    return changes


def summary(name: str, changes: list[Change]) -> str:
    if not changes:
        return f"{name}: no API changes"
    breaking = sum(c.breaking for c in changes)
    lines = [f"{name}: {len(changes)} change(s), {breaking} breaking"]
    lines += ["  " + c.line().replace("\n", "\n  ") for c in sorted(changes, key=lambda c: (not c.breaking, c.kind))]
    return "\n".join(lines)
