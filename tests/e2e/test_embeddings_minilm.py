"""The bundled all-MiniLM-L6-v2 through the server's defaults: 384 dimensions, unit length, meaningful."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.server import served

MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("minilm"), config={"default_models": True})


def test_minilm_embeds_similar_sentences_closer(server):
    client = openai.OpenAI(base_url=server.url + "/v1/openai/v1", api_key="x", max_retries=0)
    assert MODEL in [m.id for m in client.models.list()]
    sentences = ["A man is playing a guitar.", "Someone plays an acoustic guitar on stage.",
                 "The stock market fell sharply today.", "Shares dropped steeply in today's trading."]
    response = client.embeddings.create(model=MODEL, input=sentences)
    v = np.asarray([item.embedding for item in response.data])
    assert v.shape == (4, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3
    assert sim[2, 3] > sim[2, 0] + 0.3 and sim[2, 3] > sim[2, 1] + 0.3
    assert response.usage.total_tokens > 4 * 5
