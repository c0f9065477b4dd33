"""How the contract tests load each spec, reach the server and judge an answer."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import httpx
import schemathesis
from schemathesis.checks import positive_data_acceptance
from schemathesis.specs.openapi.checks import response_schema_conformance

from generated.routes import OPERATIONS
from ggstack.http.docs import spec_document
from tests.server import Server


def spec_for(name: str) -> schemathesis.schemas.BaseSchema:
    """Loaded from the generated spec at import; each call is sent to the running server."""
    return schemathesis.openapi.from_dict(copy.deepcopy(spec_document(name)))


def base_url(name: str, server: Server) -> str:
    base = httpx.URL(spec_document(name).get("servers", [{"url": "/"}])[0]["url"]).path.rstrip("/")
    return server.url + base


def unimplemented(server: Server) -> set[str]:
    return {op.operation_id for op in OPERATIONS} - implemented_ids(server)


#: Operations whose handler answers 501 to every valid request: a gap the docs name, as the
#: reference server answers a provider's NotImplementedError (DPO: docs/training.md).
GAPS = {"preference_optimize"}


def implemented_ids(server: Server) -> set[str]:
    routes = httpx.get(f"{server.url}/v1/inspect/routes").json()["data"]
    served = {(r["method"], r["route"]) for r in routes}
    return {op.operation_id for op in OPERATIONS if (op.method, op.paths[0]) in served}


#: Uploads whose content (not just type) is checked: operation -> the fields a 400 may name.
UPLOAD_CONTENT = {"dell_create_transcription": ("file",), "dell_create_translation": ("file",),
                  "dell_create_image_variation": ("image", "size")}


#: How a chat model's context overflow begins (ggstack/engines/streaming.py).
CONTEXT_OVERFLOW = "This model's maximum context length is"


def any_of(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns), re.DOTALL)


#: 400s to schema-valid requests that depend on what this server's models and engine can do,
#: not on the request's shape, each in the words its raiser uses: the tiny models' 512-token
#: context (OpenAI answers the same 400, context_length_exceeded) and vocabulary (logit_bias
#: token ids), text-only models (OpenAI refuses images to a model without vision too), a JSON
#: schema llama.cpp cannot make a grammar of (`schema` is any object in every spec), the
#: Responses tool and input item types ggstack does not serve (MCP, web search), and an MCP
#: server (list-tools' `mcp_endpoint`, a registered group's) that does not answer.
CAPABILITY_LIMITS = any_of(
    re.escape(CONTEXT_OVERFLOW),
    r"^token id \d+ is not in the model's vocabulary",
    r"has type \w+; the local models read text only$",
    r"^the JSON schema cannot be turned into a grammar",
    r"has type \w+; ggstack serves function and file_search tools only$",
    r"has type \w+; ggstack takes messages, function calls and their outputs",
    r"^MCP server .+ (could not be used|did not answer)",
)

#: 400s for rules across fields that JSON Schema cannot state: a tool choice naming no given
#: tool or forcing a call with none (OpenAI refuses both), two tools of one name, a forced call
#: together with a JSON response_format (each would need the one grammar to itself).
CROSS_FIELD_RULES = any_of(
    r"^(tool_choice|function_call) '.*' needs tools, and none were given$",
    r"^(tool_choice|function_call) names '.*', which is not one of the tools$",
    r"^tool name '.*' is given more than once( \(param: [\w.\[\]]+\))?$",
    r"^tool_choice '.*' cannot be combined with a JSON response_format$",
)


def operation_id(case) -> str:
    return case.operation.definition.raw.get("operationId", "")


def check_response(case, response, server: Server, validate: Callable[..., None]) -> None:
    """A 501 is a known gap (and must come from an operation with no handler); anything else is
    checked by `validate` (the case's validate_response, with the stateful recorder if any)."""
    if response.status_code == 501:
        assert operation_id(case) in unimplemented(server) | GAPS, f"{case.operation.label} answered 501 but has a handler"
        return
    if response.status_code == 400 and response.json().get("param") in UPLOAD_CONTENT.get(operation_id(case), ()):
        # A schema says `format: binary`; that the bytes are decodable audio or a square image it
        # cannot say, so random bytes are rightly refused (400 naming the upload).
        validate(excluded_checks=[positive_data_acceptance])
        return
    if any(value.startswith("text/event-stream") for value in response.headers.get("content-type", [])):
        # Schemathesis reads an OpenAPI 3.1 `text/event-stream` schema as the schema of each
        # event's envelope ({data, event, id}, as 3.2's itemSchema); the Llama Stack documents
        # mean the JSON in `data`. The server checks each event's data against that schema
        # itself (--validate-responses; the contract server fails on any mismatch).
        validate(excluded_checks=[response_schema_conformance])
        return
    detail = response.json().get("detail", "") if response.status_code == 400 else ""
    if detail.startswith("Invalid value"):
        # House rule, as clients expect: an unknown vector store, response or chat completion id
        # is a 400 "Invalid value: ...", where Schemathesis would expect a 404 for valid data.
        validate(excluded_checks=[positive_data_acceptance])
        return
    if CAPABILITY_LIMITS.search(detail) or CROSS_FIELD_RULES.search(detail):
        validate(excluded_checks=[positive_data_acceptance])
        return
    validate()
