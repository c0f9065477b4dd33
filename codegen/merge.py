"""One OpenAPI document for all specs, at the paths the server really answers (GET /openapi.json).

Components keep their names unless two specs define the same name differently; then the later
spec's copy gets the spec's prefix and its `$ref`s follow. An operation served at several paths
appears at each, and so does one that two specs define; only the first keeps its operationId
(they must be unique in a document) and the copies say `x-alias-of`.
"""

from __future__ import annotations

import copy
from typing import Any

from codegen.context import SpecContext

COMPONENT_PREFIX = {
    "llama-stack-stable": "Stable",
    "llama-stack-experimental": "Experimental",
    "llama-stack-deprecated": "LlamaStack",
    "llama-stack-inference": "Inference",
    "dell-pro-ai-studio": "Dell",
}


def rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: rewrite_refs(v, renames) for k, v in node.items()}
        if isinstance(out.get("$ref"), str) and out["$ref"] in renames:
            out["$ref"] = renames[out["$ref"]]
        return out
    if isinstance(node, list):
        return [rewrite_refs(v, renames) for v in node]
    return node


def merge_specs(specs: list[SpecContext], version: str) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "ggstack", "version": version,
                 "description": "Every API ggstack serves, at the paths it serves them: "
                                + ", ".join(spec.title for spec in specs) + "."},
        "servers": [{"url": "/"}],
        "paths": {},
        "components": {},
        "tags": [],
    }
    tag_names: set[str] = set()
    operation_ids: set[str] = set()
    for spec in specs:
        document = rename_clashing_components(spec, merged["components"])
        for section, items in document.get("components", {}).items():
            merged["components"].setdefault(section, {}).update(items)
        for tag in document.get("tags", []):
            if tag["name"] not in tag_names:
                tag_names.add(tag["name"])
                merged["tags"].append(tag)
        for op in spec.operations:
            path_item = document["paths"][op.spec_path]
            operation = path_item[op.method.lower()]
            shared = {k: v for k, v in path_item.items() if k in ("parameters", "summary", "description")}
            for path in op.paths:
                copy_ = dict(operation)
                if op.operation_id in operation_ids:
                    copy_.pop("operationId", None)
                    copy_["x-alias-of"] = op.operation_id
                operation_ids.add(op.operation_id)
                merged["paths"].setdefault(path, dict(shared))[op.method.lower()] = copy_
    return merged


def rename_clashing_components(spec: SpecContext, existing: dict[str, dict[str, Any]]) -> dict[str, Any]:
    document = copy.deepcopy(spec.document)
    renames: dict[str, str] = {}
    for section, items in document.get("components", {}).items():
        for name, value in items.items():
            if name in existing.get(section, {}) and existing[section][name] != value:
                renames[f"#/components/{section}/{name}"] = (
                    f"#/components/{section}/{COMPONENT_PREFIX[spec.name]}{name}")
    if not renames:
        return document
    document = rewrite_refs(document, renames)
    for ref, new_ref in renames.items():
        _, _, section, name = ref.split("/")
        items = document["components"][section]
        items[new_ref.rsplit("/", 1)[1]] = items.pop(name)
    return document
