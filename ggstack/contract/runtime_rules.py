"""400s to schema-valid requests that depend on what the server holds, not on the request's shape.

A document can say what a request may contain; it cannot say which models a server has loaded,
what those models read, what an uploaded image's size is, or whether a remote MCP server
answers. ggstack answers such requests with a 400 that names the problem, and `ggstack
contract` accepts that 400 for valid data under one of the narrow rules below, each only when
the request really carries what the message blames:

- `embedding dimension`: "embedding_dimension N does not match model 'M', which makes
  D-dimensional embeddings", and the body's `embedding_dimension` is N (and N is not D);
- `text-only models`: "... has type image; the ... models read text only" (or "is an image"),
  and the body holds an image content part;
- `model kind`: "Model 'M' is an embedding model, not an LLM" (or "is not an embedding model",
  "is an llm model, not image"), and M is a model id of the body;
- `upscale size`: "size must be WxH: Real-ESRGAN x4 gives 4x the ... input", and the form's
  `size` is given and is not WxH;
- `MCP endpoint`: "MCP server U could not be used" (or "did not answer"), and U is the
  request's `mcp_endpoint` URI, or the request names a tool group or tool (a registered MCP
  group's server is asked, and may be down);
- `grammar`: "the grammar does not parse" or "the JSON schema cannot be turned into a grammar"
  (llama.cpp's grammar parser is the judge; no schema can state GBNF or which JSON schemas it
  can compile), and the body has a `response_format`;
- `uploaded image`: "the image must be PNG, JPEG or WebP" (or square, or at most the server's
  `image_max_side`, or decodable), and the form has an `image`: `format: binary` cannot say
  what the bytes hold;
- `checkpoint directory`: "checkpoint_dir must be inside the server's model directories", and
  the body names a `checkpoint_dir`.

Anything else still fails the check, and so do these words when the request does not carry
what they blame. A Llama Stack detail may end in " (param: ...)"; the rules read past it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    """What a rule may compare the message with: the JSON or form body and the query."""

    body: Any
    query: dict[str, Any]


@dataclass(frozen=True)
class Rule:
    name: str
    message: re.Pattern[str]
    holds: Callable[[re.Match[str], Request], bool]


def field(request: Request, name: str) -> Any:
    return request.body.get(name) if isinstance(request.body, dict) else None


def has_image(value: Any) -> bool:
    """An image content part anywhere in a body (Llama Stack's `image`, OpenAI's `image_url`,
    Dell's untyped `{"image": ...}`)."""
    if isinstance(value, dict):
        if value.get("type") in ("image", "image_url") or ("image" in value and "type" not in value):
            return True
        return any(has_image(inner) for inner in value.values())
    if isinstance(value, list):
        return any(has_image(item) for item in value)
    return False


def model_ids(value: Any, key: str = "") -> set[str]:
    """Every string a model field of a body holds (`model`, `model_id`, `embedding_model`, ...)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for name, inner in value.items():
            found |= model_ids(inner, str(name))
    elif isinstance(value, list):
        for item in value:
            found |= model_ids(item, key)
    elif isinstance(value, str) and re.search(r"(^|_)model(_id)?$", key):
        found.add(value)
    return found


def mcp_uri(request: Request) -> Any:
    """list-tools' `mcp_endpoint` as Schemathesis sends it (deepObject: `mcp_endpoint[uri]`)."""
    endpoint = request.query.get("mcp_endpoint")
    return endpoint.get("uri") if isinstance(endpoint, dict) else request.query.get("mcp_endpoint[uri]")


def names_a_tool(request: Request) -> bool:
    """A tool group or tool named in the query or body: an MCP group's server answers for it."""
    named = [request.query.get("toolgroup_id"), request.query.get("tool_group_id"),
             field(request, "toolgroup_id"), field(request, "tool_name")]
    return any(isinstance(value, str) and value for value in named)


RULES = (
    Rule("embedding dimension",
         re.compile(r"embedding_dimension (\d+) does not match model '.*', which makes (\d+)-dimensional embeddings"),
         lambda m, r: field(r, "embedding_dimension") == int(m[1]) and m[1] != m[2]),
    Rule("text-only models",
         re.compile(r"(has type (image|image_url)|is an image); the [\w ]+ (here )?read text only"),
         lambda m, r: has_image(r.body)),
    Rule("model kind",
         re.compile(r"Model '(.*)' is (an? \w+ model, not (an LLM|\w+)|not an embedding model)\b"),
         lambda m, r: m[1] in model_ids(r.body)),
    Rule("upscale size",
         re.compile(r"^size must be (\d+x\d+): Real-ESRGAN x4 gives 4x the \d+x\d+ input$"),
         lambda m, r: field(r, "size") not in (None, "", m[1])),
    Rule("MCP endpoint",
         re.compile(r"MCP server (.+?) (could not be used|did not answer)", re.DOTALL),
         lambda m, r: mcp_uri(r) == m[1] or names_a_tool(r)),
    Rule("grammar",
         re.compile(r"^the (grammar does not parse|JSON schema cannot be turned into a grammar)"),
         lambda m, r: isinstance(field(r, "response_format"), dict)),
    Rule("uploaded image",
         re.compile(r"^the (image must be (PNG, JPEG or WebP|square)|image is \d+x\d+; at most|"
                    r"file is not an image that can be decoded)"),
         lambda m, r: field(r, "image") is not None),
    Rule("checkpoint directory",
         re.compile(r"checkpoint_dir must be inside the server's model directories"),
         lambda m, r: bool(field(r, "checkpoint_dir"))),
)


def runtime_refusal(request: Request, status: int, message: str) -> str | None:
    """The name of the rule that accepts this 400, or None."""
    if status != 400:
        return None
    for rule in RULES:
        match = rule.message.search(message)
        if match is not None and rule.holds(match, request):
            return rule.name
    return None
