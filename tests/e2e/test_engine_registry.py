"""ModelRegistry with real engines on the tiny GGUFs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ggstack.core.errors import AlreadyExistsError, BusyError, InvalidValueError, NotFoundError
from ggstack.engines.base import Finish, SamplingOptions
from ggstack.engines.registry import ModelRegistry, ModelSpec

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def specs(tiny_chat_gguf, tiny_embed_gguf):
    return (ModelSpec(identifier="chat", path=tiny_chat_gguf, model_type="llm", context_length=256),
            ModelSpec(identifier="emb", path=tiny_embed_gguf, model_type="embedding"))


async def test_unknown_model_is_not_found(specs):
    registry = ModelRegistry()
    with pytest.raises(NotFoundError, match="Model 'x' not found"):
        await registry.chat("x")
    with pytest.raises(NotFoundError):
        registry.get("x")
    with pytest.raises(NotFoundError):
        await registry.unregister("x")


async def test_wrong_kind_of_model_is_invalid_request(specs):
    registry = ModelRegistry()
    for spec in specs:
        registry.register(spec)
    with pytest.raises(InvalidValueError):
        await registry.chat("emb")
    with pytest.raises(InvalidValueError):
        await registry.embedder("chat")
    assert registry.loaded() == []
    await registry.close()


async def test_registration_fills_dimension_and_context_from_the_gguf(specs):
    registry = ModelRegistry()
    chat, emb = (registry.register(s) for s in specs)
    assert chat.context_length == 256  # given explicitly, kept
    assert (emb.embedding_dimension, emb.metadata["embedding_dimension"], emb.context_length) == (32, 32, 512)
    assert [s.identifier for s in registry.list()] == ["chat", "emb"]
    with pytest.raises(AlreadyExistsError):
        registry.register(specs[0])
    await registry.unregister("chat")
    assert [s.identifier for s in registry.list()] == ["emb"]


async def test_bad_registrations_fail_at_once(specs, tmp_path):
    registry = ModelRegistry()
    with pytest.raises(InvalidValueError, match="does not exist"):
        registry.register(ModelSpec(identifier="m", path=tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InvalidValueError, match="not a usable GGUF"):
        registry.register(ModelSpec(identifier="m", path=junk))
    with pytest.raises(InvalidValueError, match="does not match"):
        registry.register(specs[1].model_copy(update={"embedding_dimension": 384}))


async def test_concurrent_first_use_loads_once_and_stays_resident(specs, caplog):
    registry = ModelRegistry()
    registry.register(specs[0])
    with caplog.at_level(logging.INFO, logger="ggstack.engines"):
        engines = await asyncio.gather(*(registry.chat("chat") for _ in range(6)))
    assert all(e is engines[0] for e in engines)
    assert len([r for r in caplog.records if r.getMessage().startswith("loaded model chat")]) == 1
    assert await registry.chat("chat") is engines[0]
    assert registry.loaded() == ["chat"]
    items = [i async for i in engines[0].generate("hi", SamplingOptions(max_tokens=3))]
    assert isinstance(items[-1], Finish)
    await registry.close()


async def test_unload_and_reload(specs):
    registry = ModelRegistry()
    registry.register(specs[1])
    first = await registry.embedder("emb")
    vectors, _ = await first.embed(["hello"])
    assert await registry.unload("emb") is True
    assert await registry.unload("emb") is False
    assert registry.loaded() == []
    second = await registry.embedder("emb")
    assert second is not first
    again, _ = await second.embed(["hello"])
    assert again[0] == pytest.approx(vectors[0])
    await registry.close()
    assert registry.loaded() == []


async def test_a_failed_load_is_reported_and_retried(tmp_path, tiny_chat_gguf):
    registry = ModelRegistry()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(tiny_chat_gguf.read_bytes()[:-5000])  # valid metadata, tensors cut off
    registry.register(ModelSpec(identifier="bad", path=bad))
    for _ in range(2):
        with pytest.raises(InvalidValueError, match="cannot load"):
            await registry.chat("bad")
    assert registry.loaded() == []


async def test_unload_during_generation_ends_the_stream(specs):
    registry = ModelRegistry()
    registry.register(specs[0])
    engine = await registry.chat("chat")
    stream = engine.generate("x" * 10, SamplingOptions(temperature=0, max_tokens=200))
    await stream.__anext__()
    await registry.unload("chat")
    with pytest.raises(BusyError) as err:
        async for _ in stream:
            pass
    assert "unloaded" in str(err.value)
