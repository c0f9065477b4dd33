"""The two bundled models, end to end: SmolLM2 answers in real words; MiniLM matches a numpy reference.

The MiniLM reference is sentence-transformers' pipeline (BERT -> mean pooling -> L2 norm)
written out in numpy from the safetensors weights, with BERT's WordPiece tokenizer for
plain ASCII, so it shares no code with llama.cpp or with the converter's GGUF writing.
"""

from __future__ import annotations

import math
import string
from pathlib import Path

import anyio.to_thread
import numpy as np
import pytest

from ggstack.engines.base import Finish, SamplingOptions
from ggstack.engines.convert import find_minilm_dir, read_safetensors
from ggstack.engines.registry import ModelRegistry, default_model_specs

pytestmark = pytest.mark.anyio

SENTENCES = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Unaffable embeddings, surprisingly, are useful!",
]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine-data")


def wordpiece(text: str, vocab: dict[str, int]) -> list[int]:
    """BERT uncased tokenization for ASCII text: lowercase, split off punctuation, greedy longest match."""
    words: list[str] = []
    for chunk in text.lower().split():
        current = ""
        for ch in chunk:
            if ch in string.punctuation:
                words += [current, ch] if current else [ch]
                current = ""
            else:
                current += ch
        if current:
            words.append(current)
    ids = [vocab["[CLS]"]]
    for word in words:
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    ids.append(vocab[piece])
                    break
                end -= 1
            else:
                ids.append(vocab["[UNK]"])
                break
            start = end
    return ids + [vocab["[SEP]"]]


def bert_mean_pooled(weights: dict[str, np.ndarray], ids: list[int], *, n_head: int = 12,
                     eps: float = 1e-12) -> np.ndarray:
    """BertModel forward (exact-erf GELU, one unpadded sequence) -> mean pooling -> L2 normalisation."""
    erf = np.vectorize(math.erf)

    def w(name: str) -> np.ndarray:
        return np.asarray(weights[name], dtype=np.float64)

    def layer_norm(x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * w(prefix + ".weight") + w(prefix + ".bias")

    def linear(x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ w(prefix + ".weight").T + w(prefix + ".bias")

    n = len(ids)
    x = w("embeddings.word_embeddings.weight")[ids] + w("embeddings.position_embeddings.weight")[:n]
    x = layer_norm(x + w("embeddings.token_type_embeddings.weight")[0], "embeddings.LayerNorm")
    layer = 0
    while f"encoder.layer.{layer}.attention.self.query.weight" in weights:
        p = f"encoder.layer.{layer}"
        d = x.shape[1] // n_head
        q, k, v = (linear(x, f"{p}.attention.self.{m}").reshape(n, n_head, d).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, -1)
        x = layer_norm(x + linear(context, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(x + linear(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        layer += 1
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


async def test_minilm_gguf_matches_a_numpy_sentence_transformers_reference(data_dir):
    registry = ModelRegistry()
    for spec in default_model_specs(data_dir):
        if spec.identifier == "all-minilm-l6-v2":
            registry.register(spec)
    engine = await registry.embedder("all-minilm-l6-v2")
    try:
        assert (engine.dimension, engine.context_length) == (384, 512)
        model_dir = find_minilm_dir()
        vocab = {t: i for i, t in enumerate((model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())}
        weights = read_safetensors(model_dir / "model.safetensors")
        vectors, total = await engine.embed(SENTENCES)
        expected_ids = [wordpiece(s, vocab) for s in SENTENCES]
        assert total == sum(len(ids) for ids in expected_ids)
        for sentence, ids, got in zip(SENTENCES, expected_ids, vectors):
            assert await engine.tokenize(sentence, add_bos=True, special=False) == ids, sentence
            reference = await anyio.to_thread.run_sync(bert_mean_pooled, weights, ids)
            cosine = float(np.dot(reference, got))
            assert cosine > 0.9999, (sentence, cosine)
        # sentence-transformers' published output for "hello world" starts like this
        assert vectors[0][:4] == pytest.approx([-0.03439, 0.03094, 0.00674, 0.02606], abs=2e-4)
    finally:
        await registry.close()


async def test_minilm_conversion_is_cached(data_dir):
    from ggstack.engines.convert import ensure_minilm_gguf

    first = ensure_minilm_gguf(data_dir)
    stamp = first.stat().st_mtime_ns
    assert ensure_minilm_gguf(data_dir) == first and first.stat().st_mtime_ns == stamp
    assert not [p for p in first.parent.iterdir() if p.name.endswith(".tmp")]


async def test_smollm2_answers_with_real_text(data_dir):
    registry = ModelRegistry()
    specs = {s.identifier: s for s in default_model_specs(data_dir)}
    registry.register(specs["smollm2-135m-instruct"])
    engine = await registry.chat("smollm2-135m-instruct")
    try:
        prompt = engine.render_chat([{"role": "system", "content": "You are a helpful assistant."},
                                     {"role": "user", "content": "What is the capital of France?"}])
        text, finish = "", None
        async for item in engine.generate(prompt, SamplingOptions(temperature=0, max_tokens=30)):
            if isinstance(item, Finish):
                finish = item
            else:
                text += item.text
        assert "Paris" in text
        assert finish is not None and finish.finish_reason == "stop" and finish.completion_tokens > 3
    finally:
        await registry.close()
