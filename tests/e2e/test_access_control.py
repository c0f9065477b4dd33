"""API keys on a real server: every route but /v1/health needs one, 401 in each family's error
shape, and a key sees only the files, vector stores, chat completions, responses, datasets and
agents (with their sessions, turns and steps) it created, unless it is an admin key. Driven by the openai SDK, llama-stack-client and httpx."""

from __future__ import annotations

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from ggstack.core.access import key_digest
from tests.server import Server

KEYS = {"alice": "sk-alice-0123456789", "bob": "sk-bob-0123456789", "root": "sk-root-0123456789"}
ENV_KEY = "sk-from-the-environment"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    api_keys = [{"name": name, "sha256": key_digest(key), "admin": name == "root"} for name, key in KEYS.items()]
    config = {"api_keys": api_keys,
              "models": [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"},
                         {"identifier": "emb", "path": str(tiny_embed_gguf), "model_type": "embedding"}]}
    server = Server(tmp_path_factory.mktemp("keys"), config=config, env={"GGSTACK_API_KEY": ENV_KEY}).start()
    yield server
    server.stop()
    assert not server.mismatches(), "\n".join(server.mismatches())
    assert "sk-" not in (server.data_dir / "run.yaml").read_text()  # only digests at rest


def sdk(server: Server, who: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1/openai/v1", api_key=KEYS[who], max_retries=0)


def http(server: Server, who: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {KEYS[who]}"}, timeout=60)


def test_health_needs_no_key(server):
    assert httpx.get(f"{server.url}/v1/health").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {KEYS['bob']}"}])
def test_no_or_bad_key_is_401_in_the_llama_stack_shape(server, headers):
    answer = httpx.get(f"{server.url}/v1/models", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    body = answer.json()
    assert set(body) == {"status", "title", "detail"} and body["status"] == 401


def test_dell_routes_answer_401_in_their_shape(server):
    answer = httpx.get(f"{server.url}/v1/openai/models")
    assert answer.status_code == 401
    assert answer.json()["type"] == "authentication_error"


def test_clients_pass_their_key(server):
    assert "tiny" in [m.id for m in sdk(server, "bob").models.list()]
    client = LlamaStackClient(base_url=server.url, api_key=KEYS["bob"])
    assert "tiny" in [m.identifier for m in client.models.list()]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1/openai/v1", api_key="nope", max_retries=0).models.list()


def test_the_environment_key_is_an_admin_key(server):
    answer = httpx.get(f"{server.url}/v1/files", headers={"authorization": f"Bearer {ENV_KEY}"})
    assert answer.status_code == 200


def test_files_are_scoped_to_their_key(server):
    mine = sdk(server, "alice").files.create(file=("a.txt", b"alice's words"), purpose="assistants")
    bob = sdk(server, "bob")
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.content(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.delete(mine.id)
    assert mine.id not in [f.id for f in bob.files.list()]
    assert sdk(server, "alice").files.content(mine.id).read() == b"alice's words"
    assert mine.id in [f.id for f in sdk(server, "root").files.list()]


def test_vector_stores_are_scoped_and_files_of_others_cannot_be_attached(server):
    alice = sdk(server, "alice")
    store = alice.vector_stores.create(name="alice", extra_body={"embedding_model": "emb"})
    bob = sdk(server, "bob")
    with pytest.raises(openai.BadRequestError) as refused:
        bob.vector_stores.retrieve(store.id)
    assert refused.value.response.json()["detail"].startswith("Invalid value")
    with pytest.raises(openai.BadRequestError):
        bob.vector_stores.search(store.id, query="words")
    assert store.id not in [s.id for s in bob.vector_stores.list()]
    theirs = alice.files.create(file=("b.txt", b"more words"), purpose="assistants")
    own = bob.vector_stores.create(name="bob", extra_body={"embedding_model": "emb"})
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.files.create(own.id, file_id=theirs.id)
    assert sdk(server, "root").vector_stores.retrieve(store.id).name == "alice"


def test_chat_completions_are_scoped(server):
    alice = sdk(server, "alice")
    done = alice.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    bob = sdk(server, "bob")
    with pytest.raises(openai.BadRequestError):
        bob.chat.completions.retrieve(done.id)
    assert done.id not in [c.id for c in bob.chat.completions.list()]
    assert alice.chat.completions.retrieve(done.id).id == done.id


def test_responses_are_scoped(server):
    alice = sdk(server, "alice")
    response = alice.responses.create(model="tiny", input="hi", max_output_tokens=16)
    bob = sdk(server, "bob")
    with pytest.raises(openai.BadRequestError):
        bob.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        bob.responses.create(model="tiny", input="more", previous_response_id=response.id, max_output_tokens=16)
    assert alice.responses.retrieve(response.id).id == response.id


def test_datasets_are_scoped_and_an_id_of_another_key_is_taken(server):
    source = {"type": "rows", "rows": [{"q": "a"}]}
    with http(server, "alice") as alice, http(server, "bob") as bob:
        created = alice.post("/v1/datasets", json={"dataset_id": "shared-name", "purpose": "eval/question-answer",
                                                   "source": source})
        assert created.status_code == 200, created.text
        assert bob.get("/v1/datasets/shared-name").status_code == 404
        assert bob.get("/v1/datasetio/iterrows/shared-name").status_code == 404
        assert "shared-name" not in [d["identifier"] for d in bob.get("/v1/datasets").json()["data"]]
        taken = bob.post("/v1/datasets", json={"dataset_id": "shared-name", "purpose": "eval/question-answer",
                                               "source": {"type": "rows", "rows": [{"q": "b"}]}})
        assert taken.status_code == 409
        assert alice.get("/v1/datasetio/iterrows/shared-name").json()["data"] == [{"q": "a"}]


def test_agents_sessions_and_turns_are_scoped(server):
    alice = LlamaStackClient(base_url=server.url, api_key=KEYS["alice"], max_retries=0, timeout=120)
    config = {"model": "tiny", "instructions": "Be brief.",
              "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 4}}
    agent_id = alice.agents.create(agent_config=config).agent_id
    session_id = alice.agents.session.create(agent_id, session_name="alice's").session_id
    turn = alice.agents.turn.create(session_id, agent_id=agent_id, messages=[{"role": "user", "content": "hi"}],
                                    stream=False)
    step_id = turn.steps[0].step_id
    turn_path = f"/v1/agents/{agent_id}/session/{session_id}/turn/{turn.turn_id}"
    with http(server, "bob") as bob:
        assert agent_id not in [a["agent_id"] for a in bob.get("/v1/agents").json()["data"]]
        assert agent_id not in [a["agent_id"] for a in bob.get("/v1alpha/agents").json()["data"]]
        for path in (f"/v1/agents/{agent_id}", f"/v1/agents/{agent_id}/sessions",
                     f"/v1/agents/{agent_id}/session/{session_id}", turn_path, f"{turn_path}/step/{step_id}"):
            assert bob.get(path).status_code == 404, path
        assert bob.post(f"/v1/agents/{agent_id}/session", json={"session_name": "bob's"}).status_code == 404
        assert bob.post(f"/v1/agents/{agent_id}/session/{session_id}/turn",
                        json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 404
        assert bob.delete(f"/v1/agents/{agent_id}/session/{session_id}").status_code == 404
        assert bob.delete(f"/v1/agents/{agent_id}").status_code == 404
    read = alice.agents.session.retrieve(session_id, agent_id=agent_id)
    assert [t.turn_id for t in read.turns] == [turn.turn_id]
    with http(server, "root") as root:
        assert agent_id in [a["agent_id"] for a in root.get("/v1/agents").json()["data"]]
        assert root.get(f"{turn_path}/step/{step_id}").json()["step"]["step_id"] == step_id


def test_agent_and_session_lists_page_by_index_within_a_key(server):
    config = {"model": "tiny", "instructions": "Be brief."}
    with http(server, "bob") as bob:
        agents = [bob.post("/v1/agents", json={"agent_config": config}).json()["agent_id"] for _ in range(3)]
        page = bob.get("/v1/agents", params={"start_index": 1, "limit": 1}).json()
        assert [a["agent_id"] for a in page["data"]] == agents[1:2] and page["has_more"] is True
        last = bob.get("/v1alpha/agents", params={"start_index": 2, "limit": 5}).json()
        assert [a["agent_id"] for a in last["data"]] == agents[2:] and last["has_more"] is False
        sessions = [bob.post(f"/v1/agents/{agents[0]}/session", json={"session_name": f"s{i}"}).json()["session_id"]
                    for i in range(3)]
        listed = bob.get(f"/v1/agents/{agents[0]}/sessions", params={"start_index": 1}).json()
        assert [s["session_id"] for s in listed["data"]] == sessions[1:] and listed["has_more"] is False
