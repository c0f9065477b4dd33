"""Local JSON pointers (`#/components/schemas/X`) in a spec document."""

from __future__ import annotations

from typing import Any


def follow(document: dict[str, Any], ref: str) -> Any:
    """The node a local JSON pointer `#/a/b~1c` names."""
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def resolve_ref(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s until a node that is not one (response and requestBody objects)."""
    while "$ref" in node:
        node = follow(document, node["$ref"])
    return node
