"""Tool groups and tools as plain records, and their parameters as JSON schema.

Llama Stack describes a tool's arguments as a flat list of `ToolParameter`s (name, type,
description, required, default); the generation layer wants one JSON schema of the arguments
object (to describe the tool to the model, and to force a call by grammar). MCP servers
describe tools with a JSON schema already; both become a `ToolDefinition` here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ggstack.inference.tools import ToolSpec

#: Llama Stack parameter types -> JSON schema types (anything else is left untyped).
JSON_TYPES = {"string": "string", "str": "string", "integer": "integer", "int": "integer",
              "number": "number", "float": "number", "boolean": "boolean", "bool": "boolean",
              "array": "array", "list": "array", "object": "object", "dict": "object"}


@dataclass(frozen=True)
class ToolDefinition:
    """One tool: `schema` is the JSON schema of its arguments object."""

    name: str
    description: str = ""
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    toolgroup_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=dict(self.schema))

    def parameters(self) -> list[dict[str, Any]]:
        """The schema as Llama Stack's `ToolParameter` list (the form tool listings answer in)."""
        properties = self.schema.get("properties") or {}
        required = set(self.schema.get("required") or ())
        params = []
        for name, prop in properties.items():
            prop = prop if isinstance(prop, Mapping) else {}
            kind = prop.get("type")
            param: dict[str, Any] = {"name": name, "parameter_type": kind if isinstance(kind, str) else "string",
                                     "description": str(prop.get("description") or ""),
                                     "required": name in required}
            if "default" in prop:
                param["default"] = prop["default"]
            if isinstance(prop.get("items"), Mapping):
                param["items"] = dict(prop["items"])
            params.append(param)
        return params


def schema_of(parameters: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """`ToolParameter`s -> the JSON schema of the arguments object."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in parameters or ():
        prop: dict[str, Any] = {}
        kind = JSON_TYPES.get(str(param.get("parameter_type", "")).lower())
        if kind:
            prop["type"] = kind
        if param.get("description"):
            prop["description"] = param["description"]
        if kind == "array" and isinstance(param.get("items"), Mapping):
            prop["items"] = dict(param["items"])
        properties[param["name"]] = prop
        if param.get("required", True) and param.get("default") is None:
            required.append(param["name"])
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def from_tool_def(tool: Mapping[str, Any], toolgroup_id: str | None = None) -> ToolDefinition:
    """A client's `ToolDef` (name, description, parameters) as a definition."""
    return ToolDefinition(name=tool["name"], description=tool.get("description") or "",
                          schema=schema_of(tool.get("parameters")), toolgroup_id=toolgroup_id,
                          metadata=dict(tool.get("metadata") or {}))
