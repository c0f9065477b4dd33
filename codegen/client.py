"""The context the typed client's templates print: one method per operationId, typed from the models.

An operationId two documents define (the stable `/v1/chat/completions` and the deprecated
`/v1/openai/v1/chat/completions`) gets one method, bound to the first document in serving order
(stable before experimental before deprecated), which is where clients should call it. Every
type named here is a class datamodel-code-generator wrote; anything else is `Any`, never a guess.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any

from codegen.context import OperationContext, SpecContext, class_name
from codegen.pointers import resolve_ref

#: The error body each family's spec declares, by the serving map's error_shape.
ERROR_SCHEMAS = {"llama_stack": "Error", "dell": "ErrorResponse"}
LINE_WIDTH = 110
SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


@dataclass(frozen=True)
class ClientParam:
    name: str  # as the spec spells it, sent on the wire
    arg: str  # the Python keyword argument
    location: str
    required: bool
    annotation: str


@dataclass(frozen=True)
class ClientMethod:
    name: str
    constant: str
    http_method: str
    path: str
    summary: str
    params: tuple[ClientParam, ...]
    body: str | None  # the request model, module-qualified
    body_required: bool
    multipart: bool
    result: str  # the answer's type, module-qualified, or Any / bytes / None
    result_kind: str  # "json" | "bytes" | "empty"
    stream: str | None  # the SSE event type, when the operation streams
    error_model: str

    def signature(self, asynchronous: bool) -> str:
        """The `def` line (or lines, one parameter each, when it would pass the line width)."""
        stream = "AsyncStream" if asynchronous else "Stream"
        returns = f"{self.result} | {stream}[{self.stream}]" if self.stream else self.result
        params = ["self", "*", *(f"{p.arg}: {p.annotation}" for p in self.params if p.required)]
        if self.body:
            params.append(f"body: {self.body} | dict[str, Any]" + ("" if self.body_required else " | None = None"))
        params += [f"{p.arg}: {p.annotation} | None = None" for p in self.params if not p.required]
        if params == ["self", "*"]:
            params = ["self"]
        head = f"    {'async def' if asynchronous else 'def'} {self.name}("
        line = f"{head}{', '.join(params)}) -> {returns}:"
        if len(line) <= LINE_WIDTH:
            return line
        return head + "\n" + "".join(f"        {p},\n" for p in params) + f"    ) -> {returns}:"

    @property
    def call(self) -> str:
        """The transport call's arguments: the endpoint, path and query parameters, the body, any headers."""
        path = ", ".join(f'"{p.name}": {p.arg}' for p in self.params if p.location == "path")
        query = ", ".join(f'"{p.name}": {p.arg}' for p in self.params if p.location == "query")
        headers = ", ".join(f'"{p.name}": {p.arg}' for p in self.params if p.location == "header")
        call = f"{self.constant}, {{{path}}}, {{{query}}}, {'body' if self.body else 'None'}"
        return call + (f", {{{headers}}}" if headers else "")


def python_name(name: str) -> str:
    arg = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return f"{arg}_" if keyword.iskeyword(arg) or arg in ("self", "body") else arg


def annotation(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if kind == "array":
        return f"list[{annotation(schema.get('items', {}))}]"
    return SCALARS.get(kind, "Any") if isinstance(kind, str) else "Any"


def type_expr(schema: Any, module: str, classes: set[str]) -> str:
    """A schema as a type over the generated classes: a `$ref`, a union of them, or a list of one."""
    if not isinstance(schema, dict):
        return "Any"
    if "$ref" in schema:
        name = class_name(schema["$ref"].rsplit("/", 1)[1])
        return f"{module}.{name}" if name in classes else "Any"
    for union in ("oneOf", "anyOf"):
        if union in schema:
            parts = [type_expr(choice, module, classes) for choice in schema[union]]
            return "Any" if "Any" in parts else " | ".join(dict.fromkeys(parts))
    if schema.get("type") == "array":
        return f"list[{type_expr(schema.get('items'), module, classes)}]"
    kind = schema.get("type")
    return SCALARS.get(kind, "Any") if isinstance(kind, str) else "Any"


def success(spec: SpecContext, op: OperationContext) -> dict[str, Any]:
    node = spec.document["paths"][op.spec_path][op.method.lower()]
    for code, response in sorted(node.get("responses", {}).items()):
        if str(code).startswith("2"):
            return resolve_ref(spec.document, response)
    return {}


def build_method(spec: SpecContext, op: OperationContext, classes: set[str]) -> ClientMethod:
    module = spec.module
    content = success(spec, op).get("content", {})
    if "application/json" in content:
        result, result_kind = type_expr(content["application/json"].get("schema"), module, classes), "json"
    elif content:
        result, result_kind = "bytes", "bytes"
    else:
        result, result_kind = "None", "empty"
    stream = None
    if "text/event-stream" in content:
        stream = type_expr(content["text/event-stream"].get("schema"), module, classes)
    params = sorted((ClientParam(p.name, python_name(p.name), p.location, p.required, annotation(p.schema))
                     for p in op.parameters), key=lambda p: not p.required)
    error = ERROR_SCHEMAS[op.error_shape]
    return ClientMethod(
        name=op.operation_id, constant=op.constant, http_method=op.method, path=op.paths[0],
        summary=op.summary.replace('"""', "'''").replace("\\", "\\\\"), params=tuple(params),
        body=f"{module}.{op.body_model}" if op.body_model else None, body_required=op.body_required,
        multipart=(op.body_media_type or "").startswith("multipart/"), result=result, result_kind=result_kind,
        stream=stream, error_model=f"{module}.{error}" if error in classes else "Any")


def build_client_context(specs: list[SpecContext], classes: dict[str, set[str]]) -> list[ClientMethod]:
    """`classes`: spec module -> the class names its generated models module defines."""
    methods: dict[str, ClientMethod] = {}
    for spec in specs:
        for op in spec.operations:
            if op.operation_id not in methods:
                methods[op.operation_id] = build_method(spec, op, classes[spec.module])
    return sorted(methods.values(), key=lambda m: m.name)


def defined_classes(source: str) -> set[str]:
    return set(re.findall(r"^class (\w+)\(", source, flags=re.MULTILINE))
