"""The llama.cpp engines on tiny random-weight GGUFs: real llama.cpp, real worker threads."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import jsonschema
import pytest

from ggstack.core.errors import BusyError, ContextOverflowError, GrammarError, InvalidValueError
from ggstack.engines.base import ChatEngine, EmbeddingEngine, Finish, SamplingOptions, TokenEvent
from ggstack.engines.llamacpp import LlamaCppChatEngine, LlamaCppEmbeddingEngine
from tests.fixtures.gguf_builder import build_tiny_chat_gguf

pytestmark = pytest.mark.anyio

GREEDY = SamplingOptions(temperature=0.0, max_tokens=80)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@asynccontextmanager
async def chat_engine(path: Path, **kwargs) -> AsyncIterator[LlamaCppChatEngine]:
    engine = await LlamaCppChatEngine.load("tiny-chat", path, **kwargs)
    try:
        yield engine
    finally:
        await anyio.to_thread.run_sync(engine.close)


@asynccontextmanager
async def embed_engine(path: Path, **kwargs) -> AsyncIterator[LlamaCppEmbeddingEngine]:
    engine = await LlamaCppEmbeddingEngine.load("tiny-embed", path, **kwargs)
    try:
        yield engine
    finally:
        await anyio.to_thread.run_sync(engine.close)


async def collect(engine: ChatEngine, prompt: str | list[int], options: SamplingOptions
                  ) -> tuple[list[TokenEvent], Finish]:
    events: list[TokenEvent] = []
    async for item in engine.generate(prompt, options):
        if isinstance(item, Finish):
            return events, item
        events.append(item)
    raise AssertionError("stream ended without Finish")


def text_of(events: list[TokenEvent]) -> str:
    return "".join(e.text for e in events)


async def test_engines_satisfy_the_protocols(tiny_chat_gguf, tiny_embed_gguf):
    async with chat_engine(tiny_chat_gguf) as chat, embed_engine(tiny_embed_gguf) as emb:
        assert isinstance(chat, ChatEngine)
        assert isinstance(emb, EmbeddingEngine)


async def test_stream_yields_tokens_then_one_finish_with_counts(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        prompt = engine.render_chat([{"role": "user", "content": "hi"}])
        items = [item async for item in engine.generate(prompt, SamplingOptions(temperature=0, max_tokens=12))]
        assert all(isinstance(i, TokenEvent) for i in items[:-1])
        finish = items[-1]
        assert finish == Finish("length", len(await engine.tokenize(prompt)), 12)
        assert len(items) - 1 == 12
        assert text_of(items[:-1]).strip()


async def test_greedy_generation_is_deterministic_and_seeded_sampling_reproducible(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        prompt = engine.render_chat([{"role": "user", "content": "hello"}])
        a, _ = await collect(engine, prompt, GREEDY)
        b, _ = await collect(engine, prompt, GREEDY)
        assert text_of(a) == text_of(b)
        seeded = SamplingOptions(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, max_tokens=40, seed=7)
        c, _ = await collect(engine, prompt, seeded)
        d, _ = await collect(engine, prompt, seeded)
        assert text_of(c) == text_of(d)


async def test_penalties_change_the_greedy_text(tiny_chat_gguf):
    """Repeat, frequency and presence penalties reach llama.cpp's sampler (a wrong call there was a 500)."""
    async with chat_engine(tiny_chat_gguf) as engine:
        prompt = engine.render_chat([{"role": "user", "content": "hello"}])
        plain, _ = await collect(engine, prompt, GREEDY)
        for penalty in ({"repeat_penalty": 1.5}, {"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
            penalised, finish = await collect(engine, prompt, SamplingOptions(temperature=0.0, max_tokens=80,
                                                                              **penalty))
            assert finish.completion_tokens >= 1
            assert text_of(penalised) != text_of(plain), penalty


async def test_stop_string_spanning_tokens_ends_with_stop_and_is_not_emitted(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        prompt = engine.render_chat([{"role": "user", "content": "hi"}])
        events, _ = await collect(engine, prompt, GREEDY)
        full = text_of(events)
        # a 4-character stop taken from the middle of the greedy text necessarily spans tokens
        # (no token in the tiny vocabulary is longer than 3 characters)
        stop = full[20:24]
        expected = full[:full.find(stop)]
        stopped, finish = await collect(engine, prompt, SamplingOptions(temperature=0, max_tokens=80, stop=[stop]))
        assert finish.finish_reason == "stop"
        assert text_of(stopped) == expected
        assert stop not in text_of(stopped)
        assert finish.completion_tokens <= len(events)


async def test_max_tokens_gives_finish_reason_length(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        events, finish = await collect(engine, "abc", SamplingOptions(temperature=0, max_tokens=5))
        assert (finish.finish_reason, finish.completion_tokens, len(events)) == ("length", 5, 5)


async def test_running_into_the_context_end_gives_length_not_silence(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf, context_length=256) as engine:
        assert engine.context_length == 256
        prompt = "x" * 100  # one token per byte in the tiny vocabulary
        events, finish = await collect(engine, prompt, SamplingOptions(temperature=0, max_tokens=1000))
        assert finish.finish_reason == "length"
        assert finish.prompt_tokens == 100
        assert finish.completion_tokens == len(events) == 256 - 100


async def test_prompt_longer_than_context_is_refused_before_generation(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf, context_length=256) as engine:
        stream = engine.generate("y" * 300, GREEDY)
        with pytest.raises(ContextOverflowError) as err:
            await stream.__anext__()
        assert err.value.code == "context_length_exceeded"
        assert "256" in err.value.message and "300" in err.value.message
        # nothing reached the model's thread: its KV cache is still empty
        assert all(slot.cached_tokens == 0 for slot in await engine.slots())


async def test_closing_the_stream_stops_the_worker_within_a_few_tokens(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        prompt = "z" * 10
        stream = engine.generate(prompt, SamplingOptions(temperature=0, max_tokens=400))
        for _ in range(2):
            await stream.__anext__()
        await stream.aclose()
        (slot, *others) = sorted(await engine.slots(), key=lambda s: -s.cached_tokens)
        # 2 read + at most the 32-slot channel the scheduler may have filled ahead + 2 in flight
        assert slot.cached_tokens - len(prompt) <= 2 + 32 + 2, slot
        assert not slot.busy and not any(s.busy or s.cached_tokens for s in others)


async def test_cancelling_the_consuming_task_stops_the_worker(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in engine.generate("q" * 10, SamplingOptions(temperature=0, max_tokens=400)):
                started.set()
                await asyncio.sleep(3600)  # a client that stopped reading

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        slot = max(await engine.slots(), key=lambda s: s.cached_tokens)
        assert slot.cached_tokens - 10 <= 1 + 32 + 2 and not slot.busy, slot


async def test_full_queue_is_overloaded_with_retry_after(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf, max_queue=1, options={"parallel": 1}) as engine:
        options = SamplingOptions(temperature=0, max_tokens=300)
        running = engine.generate("a" * 10, options)
        await running.__anext__()  # holds the one slot: it pauses once the channel is full
        waiting = engine.generate("b" * 10, options)
        waiting_first = asyncio.create_task(waiting.__anext__())
        await asyncio.sleep(0.3)
        assert not waiting_first.done()
        third = engine.generate("c" * 10, options)
        with pytest.raises(BusyError) as err:
            await third.__anext__()
        assert err.value.retry_after >= 1
        await running.aclose()
        assert isinstance(await asyncio.wait_for(waiting_first, 10), TokenEvent)
        await waiting.aclose()


async def test_json_schema_output_is_valid_json_matching_the_schema(tiny_chat_gguf):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"},
                                               "tag": {"enum": ["red", "green"]}},
              "required": ["n", "ok", "tag"], "additionalProperties": False}
    async with chat_engine(tiny_chat_gguf) as engine:
        prompt = engine.render_chat([{"role": "user", "content": "json please"}])
        for seed in (1, 2, 3):
            options = SamplingOptions(temperature=1.0, max_tokens=120, seed=seed, json_schema=schema)
            events, finish = await collect(engine, prompt, options)
            assert finish.finish_reason == "stop", text_of(events)
            jsonschema.validate(json.loads(text_of(events)), schema)


async def test_gbnf_grammar_is_enforced(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        grammar = 'root ::= "yes" | "no"'
        events, finish = await collect(engine, "q", SamplingOptions(temperature=1.0, max_tokens=20, grammar=grammar))
        assert text_of(events) in ("yes", "no") and finish.finish_reason == "stop"


async def test_bad_grammar_is_invalid_request_not_a_crash(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        with pytest.raises(GrammarError) as err:
            await collect(engine, "q", SamplingOptions(grammar="root ::= ("))
        assert err.value.field == "grammar"
        events, _ = await collect(engine, "q", SamplingOptions(max_tokens=3))
        assert len(events) == 3


async def test_logprobs_are_plain_floats_with_sorted_alternatives(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        events, _ = await collect(engine, "hello", SamplingOptions(temperature=0, max_tokens=6, logprobs=3))
        for e in events:
            assert type(e.logprob) is float and e.logprob <= 0.0
            assert len(e.top_logprobs) == 3
            assert all(type(t) is str and type(lp) is float for t, lp in e.top_logprobs)
            values = [lp for _, lp in e.top_logprobs]
            assert values == sorted(values, reverse=True)
            assert e.logprob == pytest.approx(values[0])  # greedy picks the likeliest token
        plain, _ = await collect(engine, "hello", SamplingOptions(temperature=0, max_tokens=2))
        assert plain[0].logprob is None and plain[0].top_logprobs is None


async def test_token_id_prompt_and_round_trip(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        text = "Hello, world! the cat sat."
        tokens = await engine.tokenize(text)
        assert await engine.detokenize(tokens) == text
        by_text, _ = await collect(engine, text, SamplingOptions(temperature=0, max_tokens=8))
        by_ids, _ = await collect(engine, tokens, SamplingOptions(temperature=0, max_tokens=8))
        assert text_of(by_text) == text_of(by_ids)
        with pytest.raises(InvalidValueError):
            await collect(engine, [1, 2, 10**6], GREEDY)
        with pytest.raises(InvalidValueError):
            await engine.detokenize([-1])


async def test_render_chat_uses_the_gguf_template(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        assert engine.render_chat(messages) == (
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        assert engine.render_chat(messages, add_generation_prompt=False).endswith("hi<|im_end|>\n")
        # <|im_end|> is EOS and a control token: one token, not characters
        tokens = await engine.tokenize(engine.render_chat(messages))
        im_end = await engine.tokenize("<|im_end|>")
        assert len(im_end) == 1 and tokens.count(im_end[0]) == 2


async def test_model_without_chat_template_says_so(tmp_path):
    path = build_tiny_chat_gguf(tmp_path / "no-template.gguf", chat_template=None)
    async with chat_engine(path) as engine:
        with pytest.raises(InvalidValueError, match="model tiny-chat has no chat template"):
            engine.render_chat([{"role": "user", "content": "hi"}])
        events, _ = await collect(engine, "raw prompt", SamplingOptions(max_tokens=2))
        assert len(events) == 2


async def test_chat_streams_do_not_block_the_event_loop(tiny_chat_gguf):
    async with chat_engine(tiny_chat_gguf) as engine:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        for _ in range(5):
            await collect(engine, "w" * 50, SamplingOptions(temperature=0, max_tokens=200))
        elapsed = time.perf_counter() - started
        task.cancel()
        assert ticks > elapsed / 0.001 * 0.05  # the loop kept ticking (blocked, it would tick ~5 times)


async def test_embeddings_are_normalised_batched_and_counted(tiny_embed_gguf):
    async with embed_engine(tiny_embed_gguf) as engine:
        assert engine.dimension == 32
        texts = ["hello world", "the cat sat on the mat.", "dog", "hello world"]
        vectors, tokens = await engine.embed(texts)
        assert len(vectors) == 4 and all(len(v) == 32 for v in vectors)
        assert all(type(x) is float for x in vectors[0])
        for v in vectors:
            assert sum(x * x for x in v) == pytest.approx(1.0, abs=1e-9)
        assert vectors[0] == pytest.approx(vectors[3], abs=1e-6)
        assert vectors[0] != pytest.approx(vectors[1], abs=1e-3)
        per_text = [len(await engine_tokens(engine, t)) for t in texts]
        assert tokens == sum(per_text)
        for text, batched in zip(texts, vectors):
            alone, _ = await engine.embed([text])
            assert alone[0] == pytest.approx(batched, abs=1e-5)


async def engine_tokens(engine: LlamaCppEmbeddingEngine, text: str) -> list[int]:
    return await engine.tokenize(text, add_bos=True, special=False)


async def test_many_inputs_are_packed_into_several_decodes(tiny_embed_gguf):
    async with embed_engine(tiny_embed_gguf, context_length=64) as engine:
        assert engine.context_length == 64
        texts = [f"the cat {i} sat on mat {i * 7}" for i in range(40)]  # ~12 tokens each, 64 per decode
        vectors, _ = await engine.embed(texts)
        for i in (0, 17, 39):
            alone, _ = await engine.embed([texts[i]])
            assert alone[0] == pytest.approx(vectors[i], abs=1e-5)


async def test_a_short_input_is_encoded_on_one_thread_and_a_batch_on_all(tiny_embed_gguf, monkeypatch):
    """A search query's few tokens run on one thread (the second bought nothing and took a core
    from the event loop); a batch past SMALL_BATCH_TOKENS on n_threads_batch. The vectors do not
    depend on it."""
    import llama_cpp

    from ggstack.engines import llamacpp

    async with embed_engine(tiny_embed_gguf, options={"n_threads_batch": 2}) as engine:
        ctx = engine._llama.ctx
        texts = [f"the cat {i} sat on mat {i * 7}" for i in range(8)]
        assert sum([len(await engine_tokens(engine, t)) for t in texts]) > llamacpp.SMALL_BATCH_TOKENS
        await engine.embed(texts)
        assert llama_cpp.llama_n_threads_batch(ctx) == 2
        one_thread, _ = await engine.embed([texts[3]])
        assert llama_cpp.llama_n_threads_batch(ctx) == 1
        monkeypatch.setattr(llamacpp, "SMALL_BATCH_TOKENS", 0)
        two_threads, _ = await engine.embed([texts[3]])
        assert llama_cpp.llama_n_threads_batch(ctx) == 2
        assert one_thread == two_threads


async def test_token_array_inputs_match_text_inputs(tiny_embed_gguf):
    async with embed_engine(tiny_embed_gguf) as engine:
        ids = await engine_tokens(engine, "hello world")
        (by_ids,), n = await engine.embed([ids])
        (by_text,), _ = await engine.embed(["hello world"])
        assert by_ids == pytest.approx(by_text, abs=1e-6) and n == len(ids)
        assert await engine.embed([]) == ([], 0)
        with pytest.raises(InvalidValueError):
            await engine.embed([[10**6]])


async def test_embedding_input_longer_than_context_names_both_counts(tiny_embed_gguf):
    async with embed_engine(tiny_embed_gguf, context_length=64) as engine:
        with pytest.raises(ContextOverflowError) as err:
            await engine.embed(["ok", "a " * 100])
        assert err.value.code == "context_length_exceeded"
        assert "input 1" in err.value.message and "102" in err.value.message and "64" in err.value.message


def test_embedding_batch_of_300_really_aborts_llama_cpp(tiny_embed_gguf):
    """Why check_embedding_batch exists: if this starts passing, llama.cpp fixed it and the check can relax."""
    import subprocess
    import sys

    code = (f"import llama_cpp; llama_cpp.Llama({str(tiny_embed_gguf)!r}, embedding=True, n_ctx=300, "
            "n_batch=300, n_ubatch=300, flash_attn=True, pooling_type=1, verbose=False)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=False)
    assert result.returncode != 0


async def test_concurrent_embedding_requests_share_batches_and_get_their_own_rows(tiny_embed_gguf):
    async with embed_engine(tiny_embed_gguf, context_length=64, options={"max_queue": 16}) as engine:
        requests = [[f"request {r} text {i} about cats" for i in range(r % 3 + 1)] for r in range(12)]
        alone = [(await engine.embed(texts))[0] for texts in requests]
        jobs = []
        original = engine._worker.submit

        def counting_submit(run, **kwargs):
            jobs.append(run)
            return original(run, **kwargs)

        engine._worker.submit = counting_submit
        results = await asyncio.gather(*(engine.embed(texts) for texts in requests))
        for (vectors, _), expected in zip(results, alone, strict=True):
            assert len(vectors) == len(expected)
            for got, want in zip(vectors, expected, strict=True):
                assert got == pytest.approx(want, abs=1e-5)
        assert 1 <= len(jobs) < len(requests)  # merged: far fewer worker jobs than requests


async def test_more_waiting_embedding_requests_than_allowed_are_refused(tiny_embed_gguf):
    async with embed_engine(tiny_embed_gguf, options={"max_queue": 2}) as engine:
        tokens = await engine_tokens(engine, "a short text")
        # Token arrays reach the queue without a thread hop, so all six arrive at once.
        results = await asyncio.gather(*(engine.embed([tokens]) for _ in range(6)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, BusyError)]
        served = [r for r in results if not isinstance(r, BaseException)]
        assert refused and served and len(refused) + len(served) == 6
