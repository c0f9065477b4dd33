"""Tools of a Model Context Protocol server (`mcp_endpoint` tool groups), over the network.

Each list or call opens its own MCP session and closes it after: the server may be anywhere,
restart at will, and a session held open per group would outlive the requests that need it.
An endpoint whose path ends in `/sse` speaks the older HTTP+SSE transport; any other URL is
Streamable HTTP. What goes wrong on the far side (unreachable, not MCP, a tool error) is the
caller's problem to fix, so it comes back as a 400 naming the endpoint, never a 500.

Limits: connecting and each call are bounded by `TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio

from ggstack.core.errors import InvalidValueError
from ggstack.tools.definitions import ToolDefinition

log = logging.getLogger("ggstack.tools.mcp")

TIMEOUT_SECONDS = 30.0


#: What the documents declare for an MCP endpoint's uri (list-tools' `mcp_endpoint`): http(s) and a host.
HTTP_URL = re.compile(r"^https?://[^/?#\s]+", re.IGNORECASE)


def check_endpoint(uri: str, param: str = "mcp_endpoint.uri") -> str:
    if not HTTP_URL.match(uri):
        raise InvalidValueError(f"{param} must be an http(s) URL of an MCP server, not {uri!r}", field=param)
    return uri


@asynccontextmanager
async def _client(uri: str, headers: Mapping[str, str] | None) -> AsyncIterator[Any]:
    from mcp import Client  # imported on first use: the package is large and most servers never need it
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import create_mcp_http_client

    if urlsplit(uri).path.rstrip("/").endswith("/sse"):
        server: Any = sse_client(uri, headers=dict(headers or {}), timeout=TIMEOUT_SECONDS)
        async with Client(server, mode="legacy", read_timeout_seconds=TIMEOUT_SECONDS) as client:
            yield client
        return
    from mcp.client.streamable_http import streamable_http_client

    http = create_mcp_http_client(headers=dict(headers or {})) if headers else None
    transport = streamable_http_client(uri, http_client=http)
    async with Client(transport, mode="legacy", read_timeout_seconds=TIMEOUT_SECONDS) as client:
        yield client


async def _run(uri: str, headers: Mapping[str, str] | None, action: Any) -> Any:
    try:
        with anyio.fail_after(TIMEOUT_SECONDS):
            async with _client(uri, headers) as client:
                return await action(client)
    except InvalidValueError:
        raise
    except TimeoutError:
        raise InvalidValueError(f"MCP server {uri} did not answer within {TIMEOUT_SECONDS:g}s",
                                field="mcp_endpoint") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a remote server is the caller's to fix
        log.warning("MCP server %s failed: %r", uri, exc)
        raise InvalidValueError(f"MCP server {uri} could not be used: {_reason(exc)}", field="mcp_endpoint") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _reason(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def list_tools(uri: str, toolgroup_id: str, headers: Mapping[str, str] | None = None) -> list[ToolDefinition]:
    async def action(client: Any) -> list[ToolDefinition]:
        tools: list[ToolDefinition] = []
        cursor = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += [ToolDefinition(name=t.name, description=t.description or "",
                                     schema=dict(t.input_schema or {"type": "object"}), toolgroup_id=toolgroup_id,
                                     metadata={"endpoint": uri}) for t in page.tools]
            cursor = getattr(page, "next_cursor", None)
            if not cursor:
                return tools

    return await _run(uri, headers, action)


async def call_tool(uri: str, name: str, arguments: Mapping[str, Any],
                    headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A `ToolInvocationResult`: text content items; a tool-side error sets error_message."""
    async def action(client: Any) -> dict[str, Any]:
        result = await client.call_tool(name, dict(arguments))
        content = []
        for block in result.content:
            if getattr(block, "type", None) == "text":
                content.append({"type": "text", "text": block.text})
            elif getattr(block, "type", None) == "image":
                content.append({"type": "image", "image": {"data": block.data}})
            else:
                content.append({"type": "text", "text": json.dumps(block.model_dump(mode="json", by_alias=True))})
        if not content and result.structured_content is not None:
            content.append({"type": "text", "text": json.dumps(result.structured_content)})
        body: dict[str, Any] = {"content": content}
        if result.is_error:
            body["error_message"] = " ".join(c["text"] for c in content if c["type"] == "text") or "tool error"
        return body

    return await _run(uri, headers, action)
