"""The contract tool's body-id house rule: which 400s count as "this id names nothing"."""

from __future__ import annotations

from ggstack.contract.runner import accepts_unknown_body_ids, body_ids


def test_ids_are_found_at_any_depth_and_as_keys_of_id_maps() -> None:
    body = {"vector_db_id": "a", "query_config": {"vector_db_ids": ["b", "c"]}, "model": "m",
            "scoring_functions": {"llm-as-judge": None}, "content": "not-an-id"}
    assert body_ids(body) == {"a", "b", "c", "m", "llm-as-judge"}


def test_an_unknown_body_id_answered_invalid_value_not_found_is_accepted() -> None:
    body = {"vector_db_id": "", "query": "q"}
    assert accepts_unknown_body_ids(body, 400, "Invalid value: Vector store '' not found")
    assert accepts_unknown_body_ids({"shield_id": "x"}, 400, "Invalid value: no shield or guard model named 'x'; ...")
    # quoted with repr(), as the server decoded the JSON (a surrogate pair is one character)
    sent = {"provider_id": "\udae7\udcb3t"}
    assert accepts_unknown_body_ids(sent, 400, "Invalid value: provider_id '\\U000c9cb3t' is not one of rag-runtime")


def test_other_400s_to_bodies_with_ids_are_not() -> None:
    body = {"vector_db_id": "kept"}
    # an existing id refused for another reason, or the unknown thing is not one of the body's ids
    assert not accepts_unknown_body_ids(body, 400, "Invalid value: vector DB 'kept' cannot be queried today")
    assert not accepts_unknown_body_ids(body, 400, "Invalid value: Vector store 'other' not found")
    assert not accepts_unknown_body_ids({"content": "gone"}, 400, "Invalid value: Vector store 'gone' not found")
    assert not accepts_unknown_body_ids(body, 400, "Invalid request body: Vector store 'kept' not found")
    assert not accepts_unknown_body_ids(body, 422, "Invalid value: Vector store 'kept' not found")


def test_registration_ids_may_not_be_empty() -> None:
    """An empty id could never be read back by path; the overlay says so, so `ggstack contract`'s
    coverage phase no longer sends it as valid (the handlers refused it with an undeclared 400)."""
    from ggstack.http.docs import spec_document

    schemas = spec_document("llama-stack-stable")["components"]["schemas"]
    for request, field in [("RegisterModelRequest", "model_id"), ("RegisterShieldRequest", "shield_id"),
                           ("RegisterToolGroupRequest", "toolgroup_id"),
                           ("RegisterScoringFunctionRequest", "scoring_fn_id")]:
        assert schemas[request]["properties"][field].get("minLength") == 1, request
