"""How the contract tests load each spec, reach the server and judge an answer."""

from __future__ import annotations

import copy
from collections.abc import Callable

import httpx
import schemathesis
from schemathesis.checks import positive_data_acceptance

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


def implemented_ids(server: Server) -> set[str]:
    routes = httpx.get(f"{server.url}/v1/inspect/routes").json()["data"]
    served = {(r["method"], r["route"]) for r in routes}
    return {op.operation_id for op in OPERATIONS if (op.method, op.paths[0]) in served}


#: Uploads whose content (not just type) is checked: operation -> the fields a 400 may name.
UPLOAD_CONTENT = {"dell_create_transcription": ("file",), "dell_create_translation": ("file",),
                  "dell_create_image_variation": ("image", "size")}


#: How a chat model's context overflow begins (ggstack/engines/streaming.py).
CONTEXT_OVERFLOW = "This model's maximum context length is"


def operation_id(case) -> str:
    return case.operation.definition.raw.get("operationId", "")


def check_response(case, response, server: Server, validate: Callable[..., None]) -> None:
    """A 501 is a known gap (and must come from an operation with no handler); anything else is
    checked by `validate` (the case's validate_response, with the stateful recorder if any)."""
    if response.status_code == 501:
        assert operation_id(case) in unimplemented(server), f"{case.operation.label} answered 501 but has a handler"
        return
    if response.status_code == 400 and response.json().get("param") in UPLOAD_CONTENT.get(operation_id(case), ()):
        # A schema says `format: binary`; that the bytes are decodable audio or a square image it
        # cannot say, so random bytes are rightly refused (400 naming the upload).
        validate(excluded_checks=[positive_data_acceptance])
        return
    detail = response.json().get("detail", "") if response.status_code == 400 else ""
    if detail.startswith("Invalid value"):
        # House rule, as clients expect: an unknown vector store, response or chat completion id
        # is a 400 "Invalid value: ...", where Schemathesis would expect a 404 for valid data.
        validate(excluded_checks=[positive_data_acceptance])
        return
    if detail.startswith(CONTEXT_OVERFLOW):
        # The tiny models' 512-token context is a limit of the model, not of the schema; OpenAI
        # answers the same 400 (context_length_exceeded). The stateful tests name real models.
        validate(excluded_checks=[positive_data_acceptance])
        return
    validate()
