"""What the generated route tables describe: one `Operation` per spec operation.

The tables in generated/routes/ are plain data built from these classes; ggstack.http.routing
turns each into a Starlette endpoint. Keeping the description separate from the behaviour
means a spec change shows up as a readable data diff.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel

from ggstack.http.errors import InvalidRequest


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter with its (resolved) JSON schema."""

    name: str
    location: str
    required: bool
    schema: Mapping[str, Any]

    @cached_property
    def validator(self) -> Draft202012Validator:
        """Built once per parameter, not per request."""
        return Draft202012Validator(dict(self.schema))

    def parse(self, raw: list[str]) -> Any:
        """Convert the raw strings of this parameter to a value its schema accepts."""
        value = _convert(self.schema, raw, self.name)
        errors = sorted(self.validator.iter_errors(value), key=str)
        if errors:
            raise InvalidRequest(f"Invalid {self.location} parameter '{self.name}': {errors[0].message}",
                                 param=self.name)
        return value


@dataclass(frozen=True)
class Operation:
    """One operation of one spec, served at one or more paths by one handler."""

    operation_id: str
    method: str
    spec: str
    spec_path: str
    paths: tuple[str, ...]
    module: str
    summary: str
    params: tuple[Param, ...]
    body: type[BaseModel] | None
    body_media_type: str | None
    body_required: bool
    error_shape: str
    sse_done: bool


EndpointFactory = Callable[[Operation], Callable[..., Any]]


def _schema_types(schema: Mapping[str, Any]) -> set[str]:
    kinds = schema.get("type")
    if isinstance(kinds, str):
        return {kinds}
    if isinstance(kinds, list):
        return set(kinds)
    found: set[str] = set()
    for branch in (*schema.get("oneOf", ()), *schema.get("anyOf", ())):
        found |= _schema_types(branch)
    return found or {"string"}


def _convert(schema: Mapping[str, Any], raw: list[str], name: str) -> Any:
    kinds = _schema_types(schema)
    if "array" in kinds:
        item_schema = schema.get("items", {})
        values = [v for part in raw for v in (part.split(",") if len(raw) == 1 else [part])]
        return [_convert_scalar(_schema_types(item_schema), v, name) for v in values]
    return _convert_scalar(kinds, raw[-1], name)


def _convert_scalar(kinds: set[str], text: str, name: str) -> Any:
    """Try the schema's types in a fixed order; a string always stays a string if allowed."""
    if "integer" in kinds:
        try:
            return int(text)
        except ValueError:
            if kinds <= {"integer", "null"}:
                raise InvalidRequest(f"Parameter '{name}' must be an integer, got {text!r}", param=name) from None
    if "number" in kinds:
        try:
            return float(text)
        except ValueError:
            if kinds <= {"number", "null"}:
                raise InvalidRequest(f"Parameter '{name}' must be a number, got {text!r}", param=name) from None
    if "boolean" in kinds:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kinds <= {"boolean", "null"}:
            raise InvalidRequest(f"Parameter '{name}' must be true or false, got {text!r}", param=name)
    if "object" in kinds and "string" not in kinds:
        try:
            return json.loads(text)
        except ValueError:
            raise InvalidRequest(f"Parameter '{name}' must be a JSON object", param=name) from None
    return text
