"""Turn the overlaid specs and the serving map into the plain context the templates print.

Everything a template needs is decided here, in Python: operation names, served paths,
parameter schemas with their `$ref`s resolved, body model names. Templates only loop.
Iteration follows the spec's own order, which YAML loading preserves, so output is stable.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from codegen.pointers import follow, resolve_ref
from codegen.specs import SPEC_NAMES, SPECS_DIR, load_spec, overlay_names

HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # "path" | "query" | "header"
    required: bool
    schema: dict[str, Any]


@dataclass(frozen=True)
class OperationContext:
    spec: str
    operation_id: str
    method: str
    spec_path: str
    paths: tuple[str, ...]
    tag: str
    module: str
    summary: str
    parameters: tuple[Parameter, ...]
    body_model: str | None
    body_media_type: str | None
    body_required: bool
    error_shape: str
    sse_done: bool

    @property
    def constant(self) -> str:
        return self.operation_id.upper()


@dataclass
class SpecContext:
    name: str
    module: str
    title: str
    document: dict[str, Any]
    operations: list[OperationContext] = field(default_factory=list)

    @property
    def source(self) -> str:
        overlays = " and ".join(f"specs/overlays/{name}.yaml" for name in overlay_names(self.name))
        return f"specs/{self.name}.yaml" + (f" with {overlays}" if overlays else "")


def snake(name: str) -> str:
    """`PostTraining` -> `post_training`, `DatasetIO` -> `dataset_io`, `llama-stack` -> `llama_stack`."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return name.strip("_").lower()


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name) if part)


def class_name(schema_name: str) -> str:
    """The class datamodel-code-generator emits for a components/schemas key."""
    cleaned = re.sub(r"[^0-9A-Za-z_]", "_", schema_name)
    return cleaned[:1].upper() + cleaned[1:]


def load_serving_map() -> dict[str, Any]:
    with open(SPECS_DIR / "serving.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)["specs"]


def resolve(document: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """Inline local `$ref`s (for parameter schemas, which are small and never recursive)."""
    if depth > 20:
        raise ValueError("parameter schema nests $refs too deeply")
    if isinstance(node, dict):
        if "$ref" in node:
            target = follow(document, node["$ref"])
            return {**resolve(document, target, depth + 1), **{k: v for k, v in node.items() if k != "$ref"}}
        return {k: resolve(document, v, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(document, v, depth + 1) for v in node]
    return node


def lift_request_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """Give every inline request body schema a component name, `<OperationId>Request`.

    datamodel-code-generator would otherwise name them after path and method; a named
    component reads better and lets the route table refer to it by name.
    """
    document = copy.deepcopy(document)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for path_item in document.get("paths", {}).values():
        for method in HTTP_METHODS:
            op = path_item.get(method)
            if not op or "requestBody" not in op:
                continue
            body = resolve_ref(document, op["requestBody"])
            for media in body.get("content", {}).values():
                schema = media.get("schema")
                if schema is None or "$ref" in schema:
                    continue
                name = camel(op["operationId"]) + "Request"
                if name in schemas:
                    raise ValueError(f"cannot lift {op['operationId']} body: schema {name} exists")
                schemas[name] = schema
                media["schema"] = {"$ref": f"#/components/schemas/{name}"}
    return document


def served_paths(spec_path: str, tag: str, operation_id: str, serving: dict[str, Any]) -> tuple[str, ...]:
    """The spec path under the spec's base, then one copy per alias rule that matches."""
    primary = serving["base"] + spec_path
    paths = [primary]
    for rule in serving.get("aliases", []):
        if not primary.startswith(rule["from"]):
            continue
        if operation_id in rule.get("except_operations", []):
            continue
        if "tags" in rule and tag not in rule["tags"]:
            continue
        alias = rule["to"] + primary[len(rule["from"]):]
        if alias not in paths:
            paths.append(alias)
    return tuple(paths)


def build_operation(spec: str, document: dict[str, Any], serving: dict[str, Any], spec_path: str,
                    method: str, path_item: dict[str, Any]) -> OperationContext:
    op = path_item[method]
    operation_id = op["operationId"]
    tag = op.get("tags", ["Default"])[0]
    raw_params = [*path_item.get("parameters", []), *op.get("parameters", [])]
    parameters = []
    for raw in raw_params:
        param = resolve(document, raw)
        if param["in"] == "cookie":
            continue
        parameters.append(Parameter(
            name=param["name"], location=param["in"],
            required=bool(param.get("required", param["in"] == "path")),
            schema=param.get("schema", {}),
        ))
    body_model = body_media_type = None
    body_required = False
    if "requestBody" in op:
        body = resolve_ref(document, op["requestBody"])
        body_required = bool(body.get("required", False))
        body_media_type, media = next(iter(body["content"].items()))
        body_model = class_name(media["schema"]["$ref"].rsplit("/", 1)[1])
    return OperationContext(
        spec=spec, operation_id=operation_id, method=method.upper(), spec_path=spec_path,
        paths=served_paths(spec_path, tag, operation_id, serving), tag=tag, module=snake(tag),
        summary=(op.get("summary") or op.get("description") or "").strip().split("\n")[0],
        parameters=tuple(parameters), body_model=body_model, body_media_type=body_media_type,
        body_required=body_required, error_shape=serving["error_shape"], sse_done=bool(serving.get("sse_done")) and tag not in serving.get("sse_done_except_tags", ()),
    )


def build_spec_context(name: str, serving_map: dict[str, Any] | None = None) -> SpecContext:
    serving = (serving_map or load_serving_map())[name]
    document = lift_request_bodies(load_spec(name))
    ctx = SpecContext(name=name, module=snake(name), title=document["info"]["title"], document=document)
    for spec_path, path_item in document["paths"].items():
        for method in HTTP_METHODS:
            if method in path_item:
                ctx.operations.append(build_operation(name, document, serving, spec_path, method, path_item))
    return ctx


def build_context() -> list[SpecContext]:
    serving_map = load_serving_map()
    contexts = [build_spec_context(name, serving_map) for name in SPEC_NAMES]
    check_unique(contexts)
    return contexts


def check_unique(contexts: list[SpecContext]) -> None:
    """A (method, served path) has one operation; an operationId one handler module.

    Two documents may define the same operation (one operationId, at two paths); the handler
    is found by module and operationId, so both must name the same module. (Within one
    document, operationIds are unique by OpenAPI's own rule, which the spec check enforces.)
    """
    seen_ids: dict[str, tuple[str, str]] = {}
    seen_routes: dict[tuple[str, str], str] = {}
    for ctx in contexts:
        for op in ctx.operations:
            spec, module = seen_ids.setdefault(op.operation_id, (ctx.name, op.module))
            if module != op.module:
                raise ValueError(f"operationId {op.operation_id} is in handlers.{module} ({spec}) "
                                 f"and handlers.{op.module} ({ctx.name})")
            for path in op.paths:
                key = (op.method, re.sub(r"\{[^}]+\}", "{}", path))
                if key in seen_routes:
                    raise ValueError(f"{op.method} {path} is served by {seen_routes[key]} and {op.operation_id}")
                seen_routes[key] = op.operation_id
