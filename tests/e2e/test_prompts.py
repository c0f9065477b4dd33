"""Prompts end to end over HTTP (llama-stack-client 0.2.23 has no prompts resource, so httpx),
including a server restart: versions live in the SQL metadata store."""

from __future__ import annotations

import httpx
import pytest

from tests.server import Server, served


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    yield from served(tmp_path_factory.mktemp("prompts"))


def api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/v1", timeout=30)


def detail(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    return answer.json()["detail"]


def test_versions_default_and_optimistic_update(server: Server) -> None:
    http = api(server)
    made = http.post("/prompts", json={"prompt": "Hello {{ name }}, you are {{role}}."}).json()
    assert made["prompt_id"].startswith("pmpt_") and len(made["prompt_id"]) == 5 + 48
    assert (made["version"], made["variables"], made["is_default"]) == (1, ["name", "role"], True)
    pid = made["prompt_id"]
    second = http.post(f"/prompts/{pid}", json={"prompt": "Hi {{ name }}", "version": 1, "variables": ["name"],
                                                "set_as_default": False}).json()
    assert (second.get("version"), second.get("is_default")) == (2, False), second
    assert http.get(f"/prompts/{pid}").json()["version"] == 1  # the default, not the latest
    assert http.get(f"/prompts/{pid}", params={"version": 2}).json()["prompt"] == "Hi {{ name }}"
    stale = http.post(f"/prompts/{pid}", json={"prompt": "late", "version": 1, "set_as_default": True})
    assert "not the latest version" in detail(stale)
    chosen = http.post(f"/prompts/{pid}/set-default-version", json={"version": 2}).json()
    assert chosen["is_default"] and chosen["version"] == 2
    versions = http.get(f"/prompts/{pid}/versions").json()["data"]
    assert [(v["version"], v["is_default"]) for v in versions] == [(1, False), (2, True)]
    assert pid in [p["prompt_id"] for p in http.get("/prompts").json()["data"]]


def test_variables_are_checked_against_the_template(server: Server) -> None:
    http = api(server)
    undeclared = http.post("/prompts", json={"prompt": "{{ a }} and {{ b }}", "variables": ["a"]})
    assert "undeclared variables: b" in detail(undeclared)
    assert "does not match" in detail(http.post("/prompts", json={"prompt": "x", "variables": ["no spaces"]}))
    unused = http.post("/prompts", json={"prompt": "plain", "variables": ["extra"]}).json()
    assert unused["variables"] == ["extra"]


def test_unknown_prompt_or_version_is_invalid_value_and_delete_removes_all(server: Server) -> None:
    http = api(server)
    assert "Invalid value" in detail(http.get("/prompts/pmpt_nope"))
    pid = http.post("/prompts", json={"prompt": "x"}).json()["prompt_id"]
    assert "version 9 not found" in detail(http.get(f"/prompts/{pid}", params={"version": 9}))
    assert "version 9 not found" in detail(http.post(f"/prompts/{pid}/set-default-version", json={"version": 9}))
    assert http.delete(f"/prompts/{pid}").status_code == 200
    assert "not found" in detail(http.get(f"/prompts/{pid}/versions"))
    assert "not found" in detail(http.delete(f"/prompts/{pid}"))


def test_prompts_survive_a_restart(tmp_path) -> None:
    first = Server(tmp_path).start()
    try:
        pid = api(first).post("/prompts", json={"prompt": "kept {{ x }}"}).json()["prompt_id"]
        api(first).post(f"/prompts/{pid}", json={"prompt": "kept v2 {{ x }}", "version": 1, "set_as_default": True})
    finally:
        first.stop()
    again = Server(tmp_path).start()
    try:
        assert api(again).get(f"/prompts/{pid}").json()["prompt"] == "kept v2 {{ x }}"
    finally:
        again.stop()
