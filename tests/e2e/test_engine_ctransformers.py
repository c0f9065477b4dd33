"""The optional ctransformers engine on a tiny legacy GGML gpt-2 file built here."""

from __future__ import annotations

import pytest

from ggstack.core.errors import ContextOverflowError, InvalidValueError, UnsupportedError
from ggstack.engines.base import Finish, SamplingOptions, TokenEvent
from ggstack.engines.registry import ModelRegistry, ModelSpec
from tests.fixtures.gguf_builder import build_tiny_gpt2_ggml

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def gpt2_file(tmp_path_factory):
    return build_tiny_gpt2_ggml(tmp_path_factory.mktemp("ggml") / "tiny-gpt2.bin")


async def run(engine, prompt, options) -> tuple[str, Finish]:
    text = ""
    async for item in engine.generate(prompt, options):
        if isinstance(item, Finish):
            return text, item
        assert isinstance(item, TokenEvent)
        text += item.text
    raise AssertionError("no Finish")


async def test_legacy_gpt2_generates_streams_and_stops(gpt2_file):
    registry = ModelRegistry()
    registry.register(ModelSpec(identifier="gpt2", path=gpt2_file, engine="ctransformers", context_length=128,
                                options={"model_type": "gpt2", "chat_template": "{{ messages[0]['content'] }}"}))
    engine = await registry.chat("gpt2")
    try:
        assert engine.context_length == 128
        tokens = await engine.tokenize("hello the world")
        assert await engine.detokenize(tokens) == "hello the world"
        greedy = SamplingOptions(temperature=0, max_tokens=30)
        text, finish = await run(engine, "hello", greedy)
        again, _ = await run(engine, "hello", greedy)
        assert text == again
        if finish.finish_reason == "length":
            assert finish.completion_tokens == 30
        stop = text[5:8]
        if stop:
            cut, cut_finish = await run(engine, "hello", SamplingOptions(temperature=0, max_tokens=30, stop=[stop]))
            assert cut == text[:text.find(stop)] and cut_finish.finish_reason == "stop"
        sampled, _ = await run(engine, "hello", SamplingOptions(temperature=0.9, max_tokens=10, seed=5, logprobs=2))
        assert isinstance(sampled, str)
        assert engine.render_chat([{"role": "user", "content": "hi"}]) == "hi"
        with pytest.raises(UnsupportedError):
            await run(engine, "hello", SamplingOptions(grammar='root ::= "a"'))
        with pytest.raises(ContextOverflowError) as err:
            await run(engine, "x" * 200, greedy)
        assert err.value.code == "context_length_exceeded"
    finally:
        await registry.close()


async def test_a_file_ctransformers_cannot_load_is_invalid_request_not_a_crash(tmp_path, tiny_chat_gguf):
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"\x6c\x6d\x67\x67" + b"\xff" * 64)  # ggml magic, then garbage hyperparameters
    registry = ModelRegistry()
    registry.register(ModelSpec(identifier="bogus", path=bogus, engine="ctransformers"))
    with pytest.raises(InvalidValueError, match="cannot load"):
        await registry.chat("bogus")
    assert registry.loaded() == []


async def test_ctransformers_model_without_template_has_no_chat(gpt2_file):
    registry = ModelRegistry()
    registry.register(ModelSpec(identifier="g", path=gpt2_file, engine="ctransformers", context_length=64))
    engine = await registry.chat("g")
    try:
        with pytest.raises(InvalidValueError, match="has no chat template"):
            engine.render_chat([{"role": "user", "content": "hi"}])
    finally:
        await registry.close()
