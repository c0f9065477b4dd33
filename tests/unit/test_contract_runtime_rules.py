"""The contract tool's runtime-state house rules (each 400 counts only when the request carries
what the message blames, so the same words about something else still fail), and its reading
of a 501 after request validation as "not implemented"."""

from __future__ import annotations

from ggstack.contract.runtime_rules import Request, runtime_refusal


def body(**fields: object) -> Request:
    return Request(body=fields, query={})


DIMENSION = ("Invalid value: embedding_dimension 7 does not match model 'tiny-embed', which makes "
             "32-dimensional embeddings")


def test_embedding_dimension_only_for_the_dimension_asked_for() -> None:
    assert runtime_refusal(body(embedding_dimension=7), 400, DIMENSION) == "embedding dimension"
    assert runtime_refusal(body(embedding_dimension=8), 400, DIMENSION) is None
    assert runtime_refusal(body(), 400, DIMENSION) is None
    assert runtime_refusal(body(embedding_dimension=7), 422, DIMENSION) is None


def test_text_only_models_only_when_the_body_has_an_image() -> None:
    message = "Invalid value: dialogs: dialogs[0].content[1] has type image; the local models read text only"
    image = {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "image": {}}]}
    assert runtime_refusal(body(dialogs=[image]), 400, message) == "text-only models"
    assert runtime_refusal(body(dialogs=[{"role": "user", "content": "hi"}]), 400, message) is None
    dell = "messages[0].content[0] is an image; the local models read text only"
    assert runtime_refusal(body(messages=[{"content": [{"type": "image_url"}]}]), 400, dell) == "text-only models"


def test_model_kind_only_for_a_model_the_body_names() -> None:
    message = "Model 'tiny-embed' is an embedding model, not an LLM"
    assert runtime_refusal(body(model_id="tiny-embed"), 400, message) == "model kind"
    assert runtime_refusal(body(model="tiny-embed"), 400, message) == "model kind"
    assert runtime_refusal(body(model_id="tiny"), 400, message) is None
    assert runtime_refusal(body(model_id="tiny-embed"), 400, message + " (param: model_id)") == "model kind"
    assert runtime_refusal(body(name="tiny-embed"), 400, message) is None


def test_upscale_size_only_when_the_form_asks_another_size() -> None:
    message = "size must be 4x4: Real-ESRGAN x4 gives 4x the 1x1 input"
    assert runtime_refusal(body(size="8x8"), 400, message) == "upscale size"
    assert runtime_refusal(body(size="4x4"), 400, message) is None
    assert runtime_refusal(body(), 400, message) is None


def test_mcp_endpoint_only_for_the_endpoint_asked_for() -> None:
    message = "Invalid value: MCP server http://a could not be used: ConnectError"
    assert runtime_refusal(Request(body=None, query={"mcp_endpoint": {"uri": "http://a"}}), 400, message) == "MCP endpoint"
    assert runtime_refusal(Request(body=None, query={"mcp_endpoint[uri]": "http://a"}), 400, message) == "MCP endpoint"
    assert runtime_refusal(Request(body=None, query={"mcp_endpoint": {"uri": "http://b"}}), 400, message) is None
    assert runtime_refusal(Request(body=None, query={}), 400, message) is None


def test_checkpoint_dir_only_when_one_is_named() -> None:
    message = "Invalid value: checkpoint_dir must be inside the server's model directories (model_dirs), where ..."
    assert runtime_refusal(body(checkpoint_dir="/etc"), 400, message) == "checkpoint directory"
    assert runtime_refusal(body(checkpoint_dir=None), 400, message) is None


def test_other_400s_are_not_excused() -> None:
    assert runtime_refusal(body(embedding_dimension=7), 400, "Invalid value: always") is None


def test_grammar_only_with_a_response_format() -> None:
    message = "the grammar does not parse (GBNF with a 'root' rule expected)"
    assert runtime_refusal(body(response_format={"type": "grammar", "bnf": {"root": "x"}}), 400, message) == "grammar"
    assert runtime_refusal(body(), 400, message) is None


def test_uploaded_image_only_with_an_image_in_the_form() -> None:
    message = "the image must be PNG, JPEG or WebP, not GIF"
    assert runtime_refusal(body(image=b"GIF89a"), 400, message) == "uploaded image"
    assert runtime_refusal(body(size="4x4"), 400, message) is None


def test_dell_image_media_counts_as_an_image() -> None:
    dell = "messages[0].content[1] is an image; the local models read text only"
    sent = body(messages=[{"role": "user", "content": ["hi", {"image": "https://x"}]}])
    assert runtime_refusal(sent, 400, dell) == "text-only models"


def test_mcp_server_of_a_named_tool_group() -> None:
    message = "Invalid value: MCP server http://down:1/mcp could not be used: ConnectError"
    assert runtime_refusal(Request(body=None, query={"toolgroup_id": "mcp::x"}), 400, message) == "MCP endpoint"
    assert runtime_refusal(Request(body={"tool_name": "add"}, query={}), 400, message) == "MCP endpoint"
    assert runtime_refusal(Request(body=None, query={"toolgroup_id": ""}), 400, message) is None
    odd = "Invalid value: MCP server HtTPs://\x0co} could not be used: InvalidURL"
    assert runtime_refusal(Request(body=None, query={"mcp_endpoint[uri]": "HtTPs://\x0co}"}), 400, odd) == "MCP endpoint"


def test_501_to_every_valid_request_after_validation_is_not_implemented() -> None:
    """ggstack's DPO: invalid bodies get 400 from validation, valid ones 501."""
    from collections import Counter

    from ggstack.contract.runner import OperationResult

    def row(statuses: dict[int, int], valid: dict[int, int]) -> OperationResult:
        return OperationResult(spec="s", label="POST /x", operation_id="x", statuses=Counter(statuses),
                               valid_statuses=Counter(valid))

    assert row({400: 5, 501: 2}, {501: 2}).outcome == "not implemented"
    assert row({400: 5, 501: 2}, {501: 1, 400: 1}).not_implemented is False
    assert row({500: 1, 501: 2}, {501: 2}).not_implemented is False
    assert row({400: 5}, {}).not_implemented is False
