"""Synthetic data generation through llama-stack-client 0.2.23 with the tiny chat GGUF: real
sampled answers, scored by the model's token probabilities and filtered as asked."""

from __future__ import annotations

import llama_stack_client
import pytest
from llama_stack_client import LlamaStackClient

from ggstack.synthetic.filters import TOP_K
from handlers.synthetic_data_generation import CANDIDATES
from tests.server import Server

DIALOGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
           {"role": "assistant", "content": "Blue.", "stop_reason": "end_of_turn"}, {"role": "user", "content": "Another one?"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_chat_gguf) -> LlamaStackClient:
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"}]
    running = Server(tmp_path_factory.mktemp("sdg"), config={"models": models}).start()
    yield LlamaStackClient(base_url=running.url, max_retries=0)
    running.stop()
    assert running.mismatches() == []


def test_every_candidate_is_kept_with_none_and_scored(client: LlamaStackClient) -> None:
    answer = client.synthetic_data_generation.generate(dialogs=DIALOGS, filtering_function="none")
    rows = answer.synthetic_data
    assert len(rows) == 2 * CANDIDATES  # two user turns end two dialogs
    assert {row["prompt"] for row in rows} == {"Name a colour.", "Another one?"}
    assert all(0 < row["score"] <= 1 and isinstance(row["response"], str) for row in rows)
    assert answer.statistics == {"model": "tiny", "filtering_function": "none", "dialogs": 2,
                                 "candidates": 2 * CANDIDATES, "kept": 2 * CANDIDATES}


def test_filters_keep_the_best_candidates(client: LlamaStackClient) -> None:
    best = client.synthetic_data_generation.generate(dialogs=DIALOGS[:2], filtering_function="top_k", model="tiny")
    scores = [row["score"] for row in best.synthetic_data]
    assert len(scores) == TOP_K and scores == sorted(scores, reverse=True)
    one = client.synthetic_data_generation.generate(dialogs=DIALOGS[:2], filtering_function="random")
    assert len(one.synthetic_data) == 1
    for name in ("top_p", "top_k_top_p", "sigmoid"):
        kept = client.synthetic_data_generation.generate(dialogs=DIALOGS[:2], filtering_function=name)
        assert 1 <= len(kept.synthetic_data) <= CANDIDATES and kept.statistics["kept"] == len(kept.synthetic_data)


def test_bad_requests(client: LlamaStackClient) -> None:
    with pytest.raises(llama_stack_client.NotFoundError):
        client.synthetic_data_generation.generate(dialogs=DIALOGS, filtering_function="none", model="nope")
    with pytest.raises(llama_stack_client.BadRequestError, match="dialogs"):
        client.synthetic_data_generation.generate(dialogs=DIALOGS[:1], filtering_function="none")
