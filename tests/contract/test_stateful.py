"""Schemathesis' stateful phase: scenarios that create a resource and then read, change, use and
delete that same one, following the OpenAPI links the overlays add (files, vector stores, chat
completions, responses, models, prompts, vector DBs, shields in the stable document; agents,
sessions and datasets in the experimental one). Only those links: Schemathesis' own guesses
are turned off, so a scenario is one the specs declare.

Each answer is judged as the stateless tests judge it (tests/contract/checks.py), plus the
stateful checks (a deleted resource is gone, a created one is there). The CI run is short and
derandomized; `nox -s fuzz` runs many more, longer scenarios (GGSTACK_STATEFUL_EXAMPLES,
GGSTACK_STATEFUL_STEPS). Model and shield registrations need a file in model_dirs or a guard
model the contract server does not have, so their links are declared but seldom followed.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from tests.contract.checks import base_url, check_response, operation_id, spec_for
from tests.server import Server

SCENARIOS = int(os.environ.get("GGSTACK_STATEFUL_EXAMPLES", "4"))
STEPS = int(os.environ.get("GGSTACK_STATEFUL_STEPS", "6"))

#: One state machine per resource family (document, paths of its create and linked operations):
#: with every family in one machine, Schemathesis starts scenarios only from the creates it
#: rates likely to succeed, and some families were never reached.
FAMILIES = {
    "files": ("llama-stack-stable", r"^/v1/files"),
    "vector_stores": ("llama-stack-stable", r"^/v1/vector_stores"),
    "chat_completions": ("llama-stack-stable", r"^/v1/chat/completions"),
    "responses": ("llama-stack-stable", r"^/v1/responses"),
    "models": ("llama-stack-stable", r"^/v1/models"),
    "prompts": ("llama-stack-stable", r"^/v1/prompts"),
    "vector_dbs": ("llama-stack-stable", r"^/v1/vector-dbs"),
    "shields": ("llama-stack-stable", r"^/v1/shields"),
    "agents": ("llama-stack-experimental", r"^/v1alpha/agents"),
    "datasets": ("llama-stack-experimental", r"^/v1beta/(datasets|datasetio)"),
}

#: Creates that must name a real model (the contract server's, tests/contract/conftest.py) or
#: they never create anything to follow links from; everything else in their bodies is fuzzed.
#: Chat completions and responses run with the tiny chat model, so their fuzzed options
#: (tools, tool choices, n, ranges, response formats, streams...) meet the real checks behind
#: the schema, which the stateless tests reach only with unknown models (404 first).
REAL_FIELDS = {"openai_chat_completion": {"model": "tiny"},
               "create_openai_response": {"model": "tiny"},
               "openai_create_vector_store": {"embedding_model": "tiny-embed"},
               "register_vector_db": {"embedding_model": "tiny-embed"}}

#: Families whose create bodies are fuzzed against a real model run more scenarios, enough
#: that a CI run meets the server's checks behind their many options (with the request schema
#: as loose as upstream's, this derandomized run fails on several of them).
MIN_SCENARIOS = {"chat_completions": 24, "responses": 24}


def with_real_models(case) -> None:
    """Only for cases meant to be valid: a negative case must keep what makes it invalid."""
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    operation = operation_id(case)
    if not isinstance(case.body, dict):
        return
    case.body.update(REAL_FIELDS.get(operation, {}))
    if operation == "create_agent" and isinstance(case.body.get("agent_config"), dict):
        case.body["agent_config"]["model"] = "tiny"


def state_machine(name: str, paths: str, server: Server) -> type:
    schema = spec_for(name).include(path_regex=paths)
    schema.config.phases.stateful.inference.algorithms = []  # the overlays' links, nothing guessed
    machine = schema.as_state_machine()

    class Machine(machine):  # type: ignore[misc, valid-type]
        def before_call(self, case) -> None:
            with_real_models(case)

        def get_call_kwargs(self, case) -> dict:
            return {"base_url": base_url(name, server)}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            def validate(**options) -> None:
                case.validate_response(response, additional_checks=additional_checks,
                                       transport_kwargs=kwargs or None, recorder=self.recorder, **options)

            check_response(case, response, server, validate)

    return Machine


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_linked_scenarios(family: str, contract_server: Server) -> None:
    state_machine(*FAMILIES[family], contract_server).run(settings=settings(
        max_examples=max(SCENARIOS, MIN_SCENARIOS.get(family, 0)), stateful_step_count=STEPS, deadline=None, suppress_health_check=list(HealthCheck),
        derandomize=not os.environ.get("GGSTACK_FUZZ_RANDOM")))
