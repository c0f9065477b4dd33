"""The Overlay 1.0 applier: merge and remove semantics, the JSONPath subset, loud failures."""

from __future__ import annotations

import pytest

from codegen.overlay import OverlayError, apply_overlay, parse_path, query


def overlay(*actions: dict) -> dict:
    return {"overlay": "1.0.0", "info": {"title": "test", "version": "1"}, "actions": list(actions)}


def spec() -> dict:
    return {
        "openapi": "3.1.0",
        "tags": [{"name": "Chat"}, {"name": "Models"}],
        "paths": {
            "/v1/models/{model_id}": {
                "get": {"tags": ["Models"], "responses": {"200": {"description": "OK"}}},
                "delete": {"tags": ["Models"], "responses": {"200": {"description": "OK"}}},
            },
            "/v1/chat": {"post": {"tags": ["Chat"], "responses": {"200": {"description": "OK"}}}},
        },
        "components": {
            "schemas": {
                "A": {"type": "string", "nullable": True, "enum": ["x", "y"]},
                "B": {"type": "object", "properties": {"c": {"type": "integer", "nullable": True}}},
            }
        },
    }


def test_update_merges_objects_recursively_and_replaces_scalars() -> None:
    result = apply_overlay(spec(), overlay({
        "target": "$.components.schemas.A",
        "update": {"type": ["string", "null"], "description": "an A", "x-extra": {"k": 1}},
    }))
    assert result["components"]["schemas"]["A"] == {
        "type": ["string", "null"], "nullable": True, "enum": ["x", "y"], "description": "an A", "x-extra": {"k": 1},
    }


def test_update_concatenates_nested_arrays_and_appends_to_a_target_array() -> None:
    result = apply_overlay(spec(), overlay(
        {"target": "$.components.schemas.A", "update": {"enum": ["z"]}},
        {"target": "$.tags", "update": {"name": "Inference"}},
    ))
    assert result["components"]["schemas"]["A"]["enum"] == ["x", "y", "z"]
    assert result["tags"] == [{"name": "Chat"}, {"name": "Models"}, {"name": "Inference"}]


def test_update_applies_to_every_match_of_a_wildcard() -> None:
    result = apply_overlay(spec(), overlay({
        "target": "$.paths.*.*.responses",
        "update": {"default": {"description": "Error"}},
    }))
    for path_item in result["paths"].values():
        for op in path_item.values():
            assert op["responses"]["default"] == {"description": "Error"}
    # Each match gets its own copy, so editing one later cannot change another.
    defaults = [op["responses"]["default"] for item in result["paths"].values() for op in item.values()]
    assert len({id(d) for d in defaults}) == len(defaults)


def test_bracket_keys_reach_paths_with_slashes_and_braces() -> None:
    for target in ("$.paths['/v1/models/{model_id}'].get", '$.paths["/v1/models/{model_id}"].get',
                   "$['paths']['/v1/models/{model_id}']['get']"):
        result = apply_overlay(spec(), overlay({"target": target, "update": {"operationId": "get_model"}}))
        assert result["paths"]["/v1/models/{model_id}"]["get"]["operationId"] == "get_model"
        assert "operationId" not in result["paths"]["/v1/models/{model_id}"]["delete"]


def test_remove_deletes_members_and_array_elements() -> None:
    result = apply_overlay(spec(), overlay(
        {"target": "$.components.schemas.A.nullable", "remove": True},
        {"target": "$.tags[?@.name == 'Chat']", "remove": True},
        {"target": "$.paths.*.*.tags[?@ == 'Models']", "remove": True},
    ))
    assert "nullable" not in result["components"]["schemas"]["A"]
    assert result["tags"] == [{"name": "Models"}]
    assert result["paths"]["/v1/models/{model_id}"]["get"]["tags"] == []
    assert result["paths"]["/v1/chat"]["post"]["tags"] == ["Chat"]


def test_remove_several_elements_of_one_array_removes_the_right_ones() -> None:
    document = {"items": ["a", "b", "a", "c", "a"]}
    result = apply_overlay(document, overlay({"target": "$.items[?@ == 'a']", "remove": True}))
    assert result == {"items": ["b", "c"]}


def test_descendants_reach_every_depth() -> None:
    result = apply_overlay(spec(), overlay({"target": "$..nullable", "remove": True}))
    assert "nullable" not in repr(result)


def test_filter_accepts_the_parenthesised_form_and_non_string_literals() -> None:
    document = {"xs": [{"n": 1}, {"n": True}, {"n": "1"}, {"n": None}]}
    assert [n[2] for n in query(document, "$.xs[?(@.n == 1)]")] == [{"n": 1}]
    assert [n[2] for n in query(document, "$.xs[?@.n == true]")] == [{"n": True}]
    assert [n[2] for n in query(document, '$.xs[?@.n == "1"]')] == [{"n": "1"}]
    assert [n[2] for n in query(document, "$.xs[?@.n == null]")] == [{"n": None}]
    assert [n[2] for n in query(document, "$.xs[-1]")] == [{"n": None}]


def test_order_of_actions_is_kept() -> None:
    result = apply_overlay(spec(), overlay(
        {"target": "$.paths['/v1/chat'].post.tags[?@ == 'Chat']", "remove": True},
        {"target": "$.paths['/v1/chat'].post", "update": {"tags": ["Inference"]}},
    ))
    assert result["paths"]["/v1/chat"]["post"]["tags"] == ["Inference"]


def test_inputs_are_not_mutated() -> None:
    document, patch = spec(), overlay({"target": "$.components.schemas.B.properties.c", "update": {"minimum": 0}})
    before_doc, before_patch = repr(document), repr(patch)
    apply_overlay(document, patch)
    assert (repr(document), repr(patch)) == (before_doc, before_patch)


def test_yaml_aliases_are_not_updated_through_each_other() -> None:
    shared = {"type": "string"}
    document = {"a": shared, "b": shared}
    result = apply_overlay(document, overlay({"target": "$.a", "update": {"format": "uri"}}))
    assert result == {"a": {"type": "string", "format": "uri"}, "b": {"type": "string"}}


def test_a_target_that_matches_nothing_names_the_action() -> None:
    with pytest.raises(OverlayError, match=r"action 2 \(retag chat\).*matches nothing"):
        apply_overlay(spec(), overlay(
            {"target": "$.components.schemas.A", "update": {"title": "A"}},
            {"target": "$.paths['/v1/chats'].post", "update": {"tags": ["Inference"]}, "description": "retag chat"},
        ))


@pytest.mark.parametrize("bad", [
    {"overlay": "2.0.0", "actions": [{"target": "$", "update": {}}]},
    {"overlay": "1.0.0", "actions": []},
    {"overlay": "1.0.0", "actions": [{"target": "$.tags"}]},
    {"overlay": "1.0.0", "actions": [{"update": {}}]},
    {"overlay": "1.0.0", "actions": [{"target": "$", "remove": True}]},
    {"overlay": "1.0.0", "actions": [{"target": "$.openapi", "update": "3.1.1"}]},
    {"overlay": "1.0.0", "actions": [{"target": "$.components", "update": ["x"]}]},
])
def test_malformed_overlays_are_rejected(bad: dict) -> None:
    with pytest.raises(OverlayError):
        apply_overlay(spec(), bad)


@pytest.mark.parametrize("target", ["paths", "$.paths[", "$.paths.'x'", "$..", "$.paths[?@.a > 1]", "$.a-b"])
def test_unsupported_jsonpath_is_an_error(target: str) -> None:
    with pytest.raises(OverlayError):
        parse_path(target)
