"""Continuous batching in the llama.cpp chat engine, on the tiny random-weight GGUF.

Several streams share one context and one decode per step; these tests check that each
stream still gets exactly its own tokens, and that slots, prefill chunks, cancellation,
grammars, logprobs and logit bias behave when streams run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import jsonschema
import pytest

from ggstack.core.errors import BusyError, InvalidValueError
from ggstack.engines.base import SamplingOptions, TokenEvent
from ggstack.engines.llamacpp import LlamaCppChatEngine
from ggstack.engines.microbatch import split_equal
from tests.e2e.test_engine_llamacpp import chat_engine, collect

pytestmark = pytest.mark.anyio

PROMPTS = [f"the cat {i} sat on the mat " * (1 + i % 3) + "hello" for i in range(8)]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def engine_with(path: Path, **options) -> AbstractAsyncContextManager[LlamaCppChatEngine]:
    return chat_engine(path, options=options)


def ids(events: list[TokenEvent]) -> list[int]:
    return [e.token_id for e in events]


async def test_parallel_option_makes_slots_of_one_context_each(tiny_chat_gguf):
    async with engine_with(tiny_chat_gguf, parallel=3, n_ctx=256) as engine:
        assert engine.parallel == 3 and engine.context_length == 256
        assert [s.busy for s in await engine.slots()] == [False] * 3
    with pytest.raises(InvalidValueError, match="parallel"):
        await LlamaCppChatEngine.load("bad", tiny_chat_gguf, options={"parallel": 0})


async def test_interleaved_greedy_streams_match_the_same_requests_run_alone(tiny_chat_gguf):
    greedy = SamplingOptions(temperature=0, max_tokens=30)
    async with engine_with(tiny_chat_gguf, parallel=4) as engine:
        alone = [await collect(engine, p, greedy) for p in PROMPTS]
        # 8 streams on 4 slots: prefills and decodes of different streams share batches,
        # and the last four wait for slots that the first four free
        together = await asyncio.gather(*(collect(engine, p, greedy) for p in PROMPTS))
    for (solo, solo_finish), (batched, finish) in zip(alone, together):
        assert ids(batched) == ids(solo)
        assert finish == solo_finish


async def test_seeded_sampling_is_the_same_batched_or_alone(tiny_chat_gguf):
    options = [SamplingOptions(temperature=1.2, top_k=0, top_p=1.0, min_p=0.0, max_tokens=25, seed=s)
               for s in (1, 2, 3)]
    async with engine_with(tiny_chat_gguf, parallel=3) as engine:
        alone = [await collect(engine, "hello", o) for o in options]
        together = await asyncio.gather(*(collect(engine, "hello", o) for o in options))
    assert [ids(e) for e, _ in together] == [ids(e) for e, _ in alone]
    assert len({tuple(ids(e)) for e, _ in alone}) > 1  # the seeds really differ


async def test_a_shared_prefix_is_not_decoded_again_and_changes_nothing(tiny_chat_gguf, tmp_path):
    greedy = SamplingOptions(temperature=0, max_tokens=10)
    system = "<|im_start|>system\nyou are a cat<|im_end|>\n"
    first, second = system + "<|im_start|>user\nhi<|im_end|>\n", system + "<|im_start|>user\nbye<|im_end|>\n"
    async with engine_with(tiny_chat_gguf, parallel=2) as engine:
        await collect(engine, first, greedy)
        warm = await collect(engine, second, greedy)
        states = await engine.slots()
    async with engine_with(tiny_chat_gguf, parallel=2) as cold_engine:
        cold = await collect(cold_engine, second, greedy)
    assert ids(warm[0]) == ids(cold[0])
    # both went to the same slot (it shared the system prompt); the other slot is still empty
    assert min(s.cached_tokens for s in states) == 0


async def test_a_prefix_another_slot_holds_is_copied_not_decoded_again(tiny_chat_gguf):
    greedy = SamplingOptions(temperature=0, max_tokens=10)
    system = "<|im_start|>system\n" + "you are a cat who likes fish. " * 4 + "<|im_end|>\n"
    first, second = system + "<|im_start|>user\nhi<|im_end|>\n", system + "<|im_start|>user\nbye<|im_end|>\n"
    async with engine_with(tiny_chat_gguf, parallel=2) as engine:
        a, b = await engine.tokenize(first), await engine.tokenize(second)
        shared = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        # the first request keeps its slot busy, so the second must take the empty one
        busy = engine.generate(first, SamplingOptions(temperature=0, max_tokens=400))
        await busy.__anext__()
        copied = await collect(engine, second, greedy)
        states = await engine.slots()
        await busy.aclose()
    async with engine_with(tiny_chat_gguf, parallel=2) as cold_engine:
        cold = await collect(cold_engine, second, greedy)
    assert ids(copied[0]) == ids(cold[0])
    (idle,) = [s for s in states if not s.busy]
    assert shared >= 16 and idle.reused_tokens == shared


async def test_waiting_prompts_share_one_step_and_the_shortest_is_read_first(tiny_chat_gguf):
    # n_batch 16: the 41-token prompt (with BOS) needs three steps, the 6-token one fits in the first
    greedy = SamplingOptions(temperature=0, max_tokens=2)
    async with engine_with(tiny_chat_gguf, parallel=3, n_batch=16, n_ctx=256) as engine:
        released = threading.Event()
        held = engine._scheduler.call(lambda _: released.wait(60))  # the model thread waits here
        try:
            long_first = asyncio.create_task(collect(engine, "x" * 40, greedy))
            while engine.usage().queued < 1:
                await asyncio.sleep(0.01)
            short_second = asyncio.create_task(collect(engine, "y" * 5, greedy))
            while engine.usage().queued < 2:
                await asyncio.sleep(0.01)
        finally:
            released.set()
        await asyncio.wrap_future(held)
        await asyncio.gather(long_first, short_second)
        short, long_ = sorted((s for s in await engine.slots() if s.first_token_step), key=lambda s: s.cached_tokens)
    assert short.admitted_step == long_.admitted_step  # both admitted in the same step
    # the short prompt arrived second but was read in the first step, beside the long one's first chunk
    assert short.first_token_step == short.admitted_step + 1
    assert long_.first_token_step == long_.admitted_step + 3


def micro_batches_in_llama_cpp(path: Path, parts: list[tuple[int, int]], n_seq: int, n_ubatch: int) -> int:
    """How many micro-batches llama.cpp really computes for one batch of `parts` (sequence id,
    tokens) on a context with one KV stream per sequence: every micro-batch's graph normalises
    the first layer's input once ("attn_norm-0"), and the eval callback sees each node."""
    import ctypes

    import llama_cpp

    ggml = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    ggml.ggml_get_name.restype, ggml.ggml_get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    seen = [0]

    @llama_cpp.ggml_backend_sched_eval_callback
    def count(tensor, ask, _user_data):
        if ask and ggml.ggml_get_name(tensor) == b"attn_norm-0":
            seen[0] += 1
        return False

    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = 64 * n_seq, n_seq, False
    params.n_batch, params.n_ubatch = 4 * n_ubatch, n_ubatch
    params.cb_eval, params.cb_eval_user_data = count, None
    ctx = llama_cpp.llama_init_from_model(model, params)
    batch = llama_cpp.llama_batch_init(4 * n_ubatch, 0, 1)
    try:
        for seq, n in parts:
            for pos in range(n):
                i = batch.n_tokens
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = 5 + pos, pos, 1, pos == n - 1
                batch.seq_id[i][0] = seq
                batch.n_tokens += 1
        assert llama_cpp.llama_decode(ctx, batch) == 0
        return seen[0]
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


@pytest.mark.parametrize("parts", [
    [(0, 1), (1, 1), (2, 1), (3, 1)],  # a decode step of four streams: one micro-batch
    [(0, 1), (2, 1), (5, 1)],  # decode tokens with gaps between the ids: one each
    [(0, 5), (1, 3), (2, 5), (3, 3)],  # unequal prompts in id order
    [(1, 3), (3, 3), (0, 5), (2, 5)],  # ... in another order
    [(0, 1), (1, 9), (2, 10), (3, 10), (4, 12)],  # a running stream beside a burst of prompts
    [(0, 40), (1, 40), (2, 3)],  # more than n_ubatch tokens of two sequences
])
def test_split_equal_counts_the_micro_batches_llama_cpp_makes(tiny_chat_gguf, parts):
    assert len(split_equal(parts, 64)) == micro_batches_in_llama_cpp(tiny_chat_gguf, parts, n_seq=6, n_ubatch=64)


async def test_a_burst_of_prompts_is_placed_by_length_on_consecutive_slots(tiny_chat_gguf):
    # arriving long, short, long, short on empty slots: in arrival order they would make three
    # micro-batches (4 x short, then the long ones' rests, cut apart by the finished short
    # ones); shortest first on slots 0-3 they make two (4 x short, then 2 x rest on slots 2-3)
    first_token = SamplingOptions(temperature=0, max_tokens=1)
    prompts = ["a" * 4, "b" * 2, "c" * 4, "d" * 2]
    async with engine_with(tiny_chat_gguf, parallel=4, n_ctx=128) as engine:
        lengths = [len(await engine.tokenize(p)) for p in prompts]
        alone = [await collect(engine, p, first_token) for p in prompts]
    assert len(split_equal(list(enumerate(lengths)), 512)) == 3
    async with engine_with(tiny_chat_gguf, parallel=4, n_ctx=128) as engine:
        scheduler = engine._scheduler
        released = threading.Event()
        held = scheduler.call(lambda _: released.wait(60))  # the model thread waits here
        try:
            burst = [asyncio.create_task(collect(engine, p, first_token)) for p in prompts]
            while engine.usage().queued < len(prompts):
                await asyncio.sleep(0.01)
            before = scheduler.micro_batches
        finally:
            released.set()
        await asyncio.wrap_future(held)
        together = await asyncio.gather(*burst)
        states = await engine.slots()
        assert scheduler.micro_batches - before == 2
    assert [s.cached_tokens for s in states] == sorted(lengths)
    assert len({s.first_token_step for s in states}) == 1  # all read in one step
    assert [ids(events) for events, _ in together] == [ids(events) for events, _ in alone]


async def test_a_prompt_any_slot_would_serve_as_well_takes_the_oldest_and_keeps_the_other_caches(tiny_chat_gguf):
    # one after another, each sharing only its first token with the others: "xb" would keep one
    # token more on "xa"'s slot than on an empty one, but taking the empty one keeps "xa" cached
    # (one token is within PLACE_SLACK); "xd" then replaces the oldest, and "xb" again finds
    # its whole prompt where it left it
    greedy = SamplingOptions(temperature=0, max_tokens=2)
    prompts = ["x" + c * 12 for c in "abcd"]
    async with engine_with(tiny_chat_gguf, parallel=3) as engine:
        for prompt in prompts:
            await collect(engine, prompt, greedy)
        await collect(engine, prompts[1], greedy)
        states = await engine.slots()
        again = len(await engine.tokenize(prompts[1]))
    assert max(s.reused_tokens for s in states) == again - 1


async def test_a_steps_tokens_go_out_before_the_next_admission(tiny_chat_gguf):
    # between two steps the model thread admits requests (building samplers, copying KV) and
    # runs controls; the tokens the last step sampled must already be with the event loop
    async with engine_with(tiny_chat_gguf, parallel=2) as engine:
        running = engine.generate("r" * 10, SamplingOptions(temperature=0, max_tokens=400))
        await running.__anext__()

        async def drain() -> None:
            async for _ in running:
                pass

        reader = asyncio.create_task(drain())
        unposted = [await asyncio.wrap_future(engine._scheduler.call(lambda sched: len(sched._bag)))
                    for _ in range(20)]
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await running.aclose()
    assert unposted == [0] * 20


async def test_cancelling_a_stream_frees_its_slot_for_a_waiting_one(tiny_chat_gguf):
    async with engine_with(tiny_chat_gguf, parallel=1) as engine:
        endless = SamplingOptions(temperature=0, max_tokens=400)
        running = engine.generate("a" * 10, endless)
        await running.__anext__()
        waiting = asyncio.create_task(collect(engine, "b" * 10, SamplingOptions(temperature=0, max_tokens=3)))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # the only slot is taken
        await running.aclose()
        events, finish = await asyncio.wait_for(waiting, 30)
        assert finish.completion_tokens == len(events) == 3
        assert [s.busy for s in await engine.slots()] == [False]


async def test_a_long_prefill_does_not_starve_running_streams(tiny_chat_gguf):
    # n_batch 32: a 480-token prompt needs at least 15 steps of prefill, and each step
    # also decodes one token of the stream that is already running
    async with engine_with(tiny_chat_gguf, parallel=2, n_batch=32, n_ctx=512) as engine:
        running = engine.generate("r" * 10, SamplingOptions(temperature=0, max_tokens=400))
        await running.__anext__()
        received_during_prefill = 0
        long_first_token = asyncio.Event()

        async def read_running() -> None:
            nonlocal received_during_prefill
            async for _ in running:
                if not long_first_token.is_set():
                    received_during_prefill += 1

        reader = asyncio.create_task(read_running())
        long_stream = engine.generate("x" * 480, SamplingOptions(temperature=0, max_tokens=2))
        await long_stream.__anext__()
        long_first_token.set()
        await long_stream.aclose()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert received_during_prefill >= 480 // 32 - 1, received_during_prefill


async def test_grammar_and_logprobs_work_on_batched_streams(tiny_chat_gguf):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "tag": {"enum": ["red", "green"]}},
              "required": ["n", "tag"], "additionalProperties": False}
    with_logprobs = SamplingOptions(temperature=0, max_tokens=8, logprobs=3)
    async with engine_with(tiny_chat_gguf, parallel=4) as engine:
        solo_logprobs, _ = await collect(engine, "hello", with_logprobs)
        results = await asyncio.gather(
            *(collect(engine, "json please", SamplingOptions(temperature=1.0, max_tokens=80, seed=s, json_schema=schema))
              for s in (1, 2, 3)),
            collect(engine, "hello", with_logprobs))
    for events, finish in results[:3]:
        assert finish.finish_reason == "stop"
        jsonschema.validate(json.loads("".join(e.text for e in events)), schema)
    batched, _ = results[3]
    assert ids(batched) == ids(solo_logprobs)
    for mine, solo in zip(batched, solo_logprobs):
        assert type(mine.logprob) is float and mine.logprob == pytest.approx(solo.logprob, abs=1e-3)
        assert [t for t, _ in mine.top_logprobs] == [t for t, _ in solo.top_logprobs]


async def test_logit_bias_forces_and_bans_tokens(tiny_chat_gguf):
    async with engine_with(tiny_chat_gguf, parallel=2) as engine:
        plain, _ = await collect(engine, "hello", SamplingOptions(temperature=0, max_tokens=5))
        forced_id = (await engine.tokenize("z", add_bos=False))[0]
        forced, banned = await asyncio.gather(
            collect(engine, "hello", SamplingOptions(temperature=0, max_tokens=5, logit_bias={forced_id: 100})),
            collect(engine, "hello", SamplingOptions(temperature=0, max_tokens=5, logit_bias={plain[0].token_id: -100})))
        assert ids(forced[0]) == [forced_id] * 5
        assert banned[0][0].token_id != plain[0].token_id
        with pytest.raises(InvalidValueError):
            await collect(engine, "hello", SamplingOptions(max_tokens=2, logit_bias={10**6: 1.0}))


async def test_requests_beyond_slots_and_queue_are_overloaded(tiny_chat_gguf):
    async with engine_with(tiny_chat_gguf, parallel=2, max_queue=1) as engine:
        endless = SamplingOptions(temperature=0, max_tokens=400)
        running = [engine.generate(c * 10, endless) for c in "ab"]
        for stream in running:
            await stream.__anext__()
        waiting = engine.generate("c" * 10, endless)
        waiting_first = asyncio.create_task(waiting.__anext__())
        await asyncio.sleep(0.2)
        with pytest.raises(BusyError):
            await collect(engine, "d" * 10, endless)
        await running[0].aclose()
        assert isinstance(await asyncio.wait_for(waiting_first, 30), TokenEvent)
        await waiting.aclose()
        await running[1].aclose()


async def test_a_burst_of_slots_plus_queue_requests_is_accepted(tiny_chat_gguf):
    async with engine_with(tiny_chat_gguf, parallel=4, max_queue=1) as engine:
        results = await asyncio.gather(*(collect(engine, c * 10, SamplingOptions(temperature=0, max_tokens=3))
                                         for c in "abcde"))
        assert [finish.completion_tokens for _, finish in results] == [3] * 5
