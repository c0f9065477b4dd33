"""Rerank on a real server with the tiny cross-encoder GGUF, through llama-stack-client 0.2.23 and httpx.

The tiny reranker's weights are random, so which item is "relevant" means nothing; what is
checked is that the server scores exactly what the model computes. `reference_score` runs the
same BERT cross-encoder in numpy (embeddings, two encoder layers, the [CLS] row through the
classification head) on the pair as llama.cpp's server puts it together ([CLS] query [SEP]
item), and the server's scores must agree with it, in the spec's order.
"""

from __future__ import annotations

import gguf
import httpx
import numpy as np
import pytest
from llama_stack_client import BadRequestError, NotFoundError

from tests.fixtures.gguf_builder import bert_vocab
from tests.server import Server, served, stack_client

QUERY = "hello world"
ITEMS = ["the cat sat", "hello world", "dog", "the mat on the dog", "cat on mat"]  # whole words of the vocabulary
RERANKER = "rr"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_embed_gguf, tiny_rerank_gguf):
    models = [{"identifier": "emb", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    config = {"models": models, "model_dirs": [str(tiny_rerank_gguf.parent), str(tiny_embed_gguf.parent)]}
    yield from served(tmp_path_factory.mktemp("rerank"), config=config)


@pytest.fixture
def client(server):
    yield from stack_client(server)


@pytest.fixture
def reranker(client, tiny_rerank_gguf):
    """The tiny cross-encoder registered as a rerank model (the way a client registers one)."""
    if RERANKER not in [m.identifier for m in client.models.list()]:
        client.models.register(model_id=RERANKER, provider_model_id=tiny_rerank_gguf.name, model_type="rerank")
    return RERANKER


def post(server: Server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


# -- the numpy reference ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_score(tiny_rerank_gguf):
    weights = {t.name: np.array(t.data, dtype=np.float64) for t in gguf.GGUFReader(str(tiny_rerank_gguf)).tensors}
    ids = {token: i for i, token in enumerate(bert_vocab())}

    def tokens(text: str) -> list[int]:  # the tiny vocabulary has these words whole
        return [ids["\u2581" + word] for word in text.split()]

    return lambda query, item: cross_encoder(weights, [ids["[CLS]"], *tokens(query), ids["[SEP]"], *tokens(item)])


def cross_encoder(w: dict[str, np.ndarray], tokens: list[int], n_head: int = 2, n_layer: int = 2) -> float:
    def norm(x: np.ndarray, name: str) -> np.ndarray:
        centred = x - x.mean(-1, keepdims=True)
        return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-12) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    x = w["token_embd.weight"][tokens] + w["token_types.weight"][0] + w["position_embd.weight"][:len(tokens)]
    x = norm(x, "token_embd_norm")
    for i in range(n_layer):
        q, k, v = (dense(x, f"blk.{i}.attn_{name}") for name in "qkv")
        d = x.shape[1] // n_head
        heads = []
        for h in range(n_head):
            part = slice(h * d, (h + 1) * d)
            logits = q[:, part] @ k[:, part].T / np.sqrt(d)
            attn = np.exp(logits - logits.max(-1, keepdims=True))
            heads.append(attn / attn.sum(-1, keepdims=True) @ v[:, part])
        x = norm(x + dense(np.concatenate(heads, 1), f"blk.{i}.attn_output"), f"blk.{i}.attn_output_norm")
        up = dense(x, f"blk.{i}.ffn_up")
        gelu = 0.5 * up * (1 + np.tanh(np.sqrt(2 / np.pi) * (up + 0.044715 * up**3)))
        x = norm(x + dense(gelu, f"blk.{i}.ffn_down"), f"blk.{i}.layer_output_norm")
    pooled = np.tanh(dense(x[0], "cls"))
    return float(dense(pooled, "cls.output")[0])


# -- without a reranker ----------------------------------------------------------------------------


def test_without_a_rerank_model_the_400_says_how_to_register_one(server, client):
    if RERANKER in [m.identifier for m in client.models.list()]:
        client.models.unregister(RERANKER)
    response = post(server, "/v1alpha/inference/rerank", {"model": "emb", "query": QUERY, "items": ITEMS})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "no rerank model is registered" in detail and "POST /v1/models" in detail
    assert '"model_type": "rerank"' in detail
    with pytest.raises(BadRequestError, match="no rerank model is registered"):
        client.inference.rerank(model="anything", query=QUERY, items=ITEMS)


# -- registration ----------------------------------------------------------------------------------


def test_a_rerank_model_registers_and_lists_with_its_type(client, reranker):
    model = client.models.retrieve(reranker)
    assert model.identifier == reranker and model.api_model_type == "rerank"
    assert {m.identifier: m.api_model_type for m in client.models.list()}[reranker] == "rerank"


def test_a_gguf_without_rank_pooling_is_not_a_reranker(client, tiny_embed_gguf):
    with pytest.raises(BadRequestError, match="is not a reranker"):
        client.models.register(model_id="not-rr", provider_model_id=tiny_embed_gguf.name, model_type="rerank")


def test_a_reranker_is_not_an_embedding_model(client, tiny_rerank_gguf):
    with pytest.raises(BadRequestError, match="is a reranker"):
        client.models.register(model_id="rr-as-emb", provider_model_id=tiny_rerank_gguf.name,
                               model_type="embedding")


# -- scores ----------------------------------------------------------------------------------------


def test_client_rerank_scores_what_the_model_computes_sorted_by_score(client, reranker, reference_score):
    results = client.inference.rerank(model=reranker, query=QUERY, items=ITEMS)
    expected = [reference_score(QUERY, item) for item in ITEMS]
    assert sorted(r.index for r in results) == list(range(len(ITEMS)))
    scores = [r.relevance_score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert [r.index for r in results] == sorted(range(len(ITEMS)), key=lambda i: -expected[i])
    for r in results:  # float32 and llama.cpp's GELU table against float64: a few thousandths
        assert r.relevance_score == pytest.approx(expected[r.index], abs=0.01)
    assert len(set(np.round(scores, 3))) == len(ITEMS), "distinct items score differently"


def test_each_item_scores_the_same_alone_or_in_a_batch(client, reranker):
    together = {r.index: r.relevance_score for r in client.inference.rerank(model=reranker, query=QUERY, items=ITEMS)}
    for i, item in enumerate(ITEMS):
        (alone,) = client.inference.rerank(model=reranker, query=QUERY, items=[item])
        assert alone.index == 0 and alone.relevance_score == pytest.approx(together[i], abs=1e-4)


def test_max_num_results_keeps_the_best(client, reranker):
    everything = client.inference.rerank(model=reranker, query=QUERY, items=ITEMS)
    top = client.inference.rerank(model=reranker, query=QUERY, items=ITEMS, max_num_results=2)
    assert [r.index for r in top] == [r.index for r in everything[:2]]
    more = client.inference.rerank(model=reranker, query=QUERY, items=ITEMS, max_num_results=50)
    assert len(more) == len(ITEMS)


def test_text_parts_and_both_paths_give_the_same_answer(server, reranker):
    plain = post(server, "/v1alpha/inference/rerank", {"model": reranker, "query": QUERY, "items": ITEMS})
    parts = post(server, "/v1/inference/rerank", {
        "model": reranker, "query": {"type": "text", "text": QUERY},
        "items": [{"type": "text", "text": item} for item in ITEMS]})
    assert plain.status_code == parts.status_code == 200
    assert plain.json() == parts.json() and set(plain.json()) == {"data"}


def test_no_items_is_an_empty_list(server, reranker):
    response = post(server, "/v1alpha/inference/rerank", {"model": reranker, "query": QUERY, "items": []})
    assert response.status_code == 200 and response.json() == {"data": []}


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "text"), [
    ({"items": ["dog", {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
     "items[1] is an image"),
    ({"query": {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}}, "query is an image"),
    ({"query": ""}, "query must not be empty"),
    ({"max_num_results": 0}, "max_num_results"),
    ({"model": "emb"}, "not a rerank model; rerank models: rr"),
    ({"items": ["dog " * 600]}, "maximum context length of 512 tokens"),
])
def test_bad_requests_are_400_naming_the_problem(server, reranker, body, text):
    response = post(server, "/v1alpha/inference/rerank", {"model": reranker, "query": QUERY, "items": ITEMS, **body})
    assert response.status_code == 400, response.text
    assert text in response.json()["detail"]


def test_an_unknown_model_is_404(client, reranker):
    with pytest.raises(NotFoundError, match="Model 'nope' not found"):
        client.inference.rerank(model="nope", query=QUERY, items=ITEMS)


def test_dell_performance_times_rerank_trials(server, reranker):
    response = post(server, "/v1/performance", {"model": reranker, "trials": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"].startswith("Rerank performance measured") and len(body["execution_times"]) == 2
