"""The llama-cpp-python engines: chat/completion generation and embeddings on GGUF models.

A chat model is one llama.cpp context with `parallel` sequences (default 4), decoded together
by a `BatchScheduler` thread (continuous batching, see scheduler.py); an embedding model is a
`llama_cpp.Llama` on a `ModelWorker` thread. Decoding, sampling and embedding run only on
those threads. Tokenising is not: it only reads the vocabulary (llama.cpp's own server
tokenises on its HTTP threads too), and a prompt that is too long must be refused before it
waits in the model's queue. A short text is tokenised on the event loop itself (1,000
characters take ~0.8 ms), a longer one on anyio's thread pool: a hop there cost a burst of
8 chat requests 33 ms (median) before the first reached the model, against 5 ms inline, at load ~5.

Measured on SmolLM2-135M (2 cores): `logits_all=True` allocates n_ctx x n_vocab floats
(2048 x 49152 x 4 = 400 MB) and copies every row on each decode, so it is never used.
Logprobs read one batch position's logits (`llama_get_logits_ith`), which llama.cpp keeps
anyway for sampling; the cost is one log-softmax per token and only when asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from ggstack.core.errors import ContextOverflowError, GrammarError, InvalidValueError
from ggstack.engines.admission import LLAMA_CPP_OPTIONS, MAX_PARALLEL_OPTION
from ggstack.engines.base import EngineLoad, Finish, SamplingOptions, TokenEvent
from ggstack.engines.chat_template import ChatTemplate
from ggstack.engines.coalesce import Coalescer
from ggstack.engines.gguf_info import GGUFFormatError, inspect_gguf
from ggstack.engines.scheduler import BatchScheduler, GenerationRequest
from ggstack.engines.streaming import Channel, StreamingChatEngine, check_token_ids
from ggstack.engines.worker import DEFAULT_MAX_QUEUE, ModelWorker

log = logging.getLogger("ggstack.engines")

POOLING_TYPES = {"unspecified": -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
DEFAULT_CHAT_CONTEXT = 4096
DEFAULT_EMBEDDING_CONTEXT = 512
# Slots per chat model: 4 requests are served at once instead of queueing (docs/benchmarks.md,
# "Continuous batching"); each costs one context of KV (SmolLM2-135M: 22.5 KiB per token, so
# 4 x 4096 tokens = 360 MiB).
DEFAULT_PARALLEL = 4
# Texts up to this many characters are tokenised on the event loop (about 0.8 us per character
# on SmolLM2's vocabulary, so at most ~1 ms); longer ones on a worker thread.
INLINE_TOKENIZE_CHARS = 1024
# An encoder batch of at most this many tokens (a search query or two) runs on one thread,
# whatever n_threads_batch says. MiniLM on 8 tokens took 3.6 ms on one thread and 4.1 on two
# (process CPU time the same as wall time on two: the second thread bought nothing), and
# the second core stays free for the event loop and Chroma's query (docs/benchmarks.md,
# "Vector search over HTTP"). The output does not depend on the thread count.
SMALL_BATCH_TOKENS = 32


def check_embedding_batch(n_batch: int) -> None:
    """Refuse a batch size that would abort the whole process inside llama.cpp.

    With embedding=True, llama.cpp 0.3.36 aborts (not raises) at context creation when
    n_batch is above 256 and not a multiple of 256, so this must be checked before `Llama()`.
    """
    if n_batch < 1 or (n_batch > 256 and n_batch % 256):
        raise InvalidValueError(f"embedding context {n_batch} must be at most 256 or a multiple of 256",
                                field="context_length")


@dataclass(frozen=True)
class LlamaCppOptions:
    """Load-time settings, from a model spec's `options` (unknown keys are an error)."""

    n_ctx: int
    n_batch: int
    n_threads: int
    n_threads_batch: int
    flash_attn: bool | None  # None: llama.cpp decides ("auto", llama-server's default; on for CPU)
    pooling_type: int
    use_mmap: bool
    parallel: int = 1

    @classmethod
    def from_spec(cls, options: Mapping[str, Any], *, context_length: int | None, embedding: bool,
                  trained_context: int | None) -> LlamaCppOptions:
        unknown = sorted(set(options) - LLAMA_CPP_OPTIONS)
        if unknown:
            raise InvalidValueError(f"unknown llama-cpp option(s): {', '.join(unknown)}", field="options")
        # Half the cores by default: on the 2-core target a 2-thread decode spin-waits against
        # any other busy process and fell from ~50 to ~5 tok/s on SmolLM2 (1 thread: 40-57 tok/s).
        # An encoder only runs big batches, which scale with cores: all of them (with OpenMP's
        # passive wait policy, see ggstack.engines, a busy neighbour no longer makes them collapse).
        cpus = max(1, (os.cpu_count() or 1) // (1 if embedding else 2))
        default_ctx = DEFAULT_EMBEDDING_CONTEXT if embedding else DEFAULT_CHAT_CONTEXT
        n_ctx = int(options.get("n_ctx") or context_length or default_ctx)
        if trained_context and (embedding or context_length is None and "n_ctx" not in options):
            # an encoder has exactly trained_context position embeddings; a decoder only
            # gets the cap when the user did not ask for more explicitly
            n_ctx = min(n_ctx, trained_context)
        if n_ctx < 8:
            raise InvalidValueError(f"context length {n_ctx} is too small", field="context_length")
        pooling = str(options.get("pooling", "unspecified")).lower()
        # rank pooling gives n_cls_out floats per sequence, not an n_embd vector: only rerankers use it
        if pooling not in POOLING_TYPES or (embedding and pooling in ("none", "rank")):
            raise InvalidValueError(f"pooling must be one of mean, cls, last (got {pooling})", field="options")
        if embedding:
            n_batch = n_ctx  # an encoder sees a whole input in one ubatch
            check_embedding_batch(n_batch)
        else:
            n_batch = min(int(options.get("n_batch", 512)), n_ctx)
        parallel = int(options.get("parallel", 1 if embedding else DEFAULT_PARALLEL))
        if not 1 <= parallel <= MAX_PARALLEL_OPTION or (embedding and parallel != 1):
            raise InvalidValueError(f"parallel must be between 1 and {MAX_PARALLEL_OPTION} (1 for embedding models)",
                                    field="options")
        return cls(n_ctx=n_ctx, n_batch=n_batch, parallel=parallel,
                   n_threads=int(options.get("n_threads", cpus)),
                   n_threads_batch=int(options.get("n_threads_batch", cpus)),
                   flash_attn=bool(options["flash_attn"]) if "flash_attn" in options else (True if embedding else None),
                   pooling_type=POOLING_TYPES[pooling], use_mmap=bool(options.get("use_mmap", True)))


async def trained_context(path: Path) -> int | None:
    try:
        info = await anyio.to_thread.run_sync(inspect_gguf, path)
    except GGUFFormatError as exc:
        raise InvalidValueError(f"cannot load model file {path.name}: {exc}", field="path") from None
    return info.context_length


def _new_llama(path: Path, opts: LlamaCppOptions, *, embedding: bool) -> Any:
    import llama_cpp  # heavy import, and only needed once a model is used

    if embedding:
        check_embedding_batch(opts.n_batch)
    try:
        return llama_cpp.Llama(
            model_path=str(path), n_ctx=opts.n_ctx, n_batch=opts.n_batch,
            n_ubatch=opts.n_batch if embedding else min(opts.n_batch, 512),
            n_threads=opts.n_threads, n_threads_batch=opts.n_threads_batch, flash_attn=bool(opts.flash_attn),
            embedding=embedding, pooling_type=opts.pooling_type, use_mmap=opts.use_mmap, verbose=False)
    except (ValueError, RuntimeError) as exc:
        log.warning("llama.cpp could not load %s: %s", path, exc)
        raise InvalidValueError(f"cannot load model file {path.name}: llama.cpp rejected it", field="path") from None


class LlamaCppChatEngine(StreamingChatEngine):
    """A text-generation GGUF served by continuous batching (implements `ChatEngine`).

    One llama.cpp context holds `parallel` sequences; a `BatchScheduler` thread decodes them
    together. `context_length` is what one request may use (each slot has that many KV cells).
    """

    @classmethod
    async def load(cls, identifier: str, path: Path, *, options: Mapping[str, Any] | None = None,
                   context_length: int | None = None, max_queue: int = DEFAULT_MAX_QUEUE) -> LlamaCppChatEngine:
        """Load the model and start its scheduler; `options` are LlamaCppOptions keys plus max_queue."""
        options = dict(options or {})
        opts = LlamaCppOptions.from_spec(options, context_length=context_length, embedding=False,
                                         trained_context=await trained_context(path))
        model, ctx = await anyio.to_thread.run_sync(_new_batched_context, path, opts)
        scheduler = BatchScheduler(identifier, model, ctx, n_slots=opts.parallel, n_batch=opts.n_batch,
                                   max_queue=int(options.get("max_queue", max_queue)))
        scheduler.start()
        return cls(identifier, model, scheduler)

    def __init__(self, identifier: str, model: Any, scheduler: BatchScheduler) -> None:
        import llama_cpp

        self.identifier = identifier
        self._lib = llama_cpp
        self._model = model
        self._scheduler = scheduler
        self.n_vocab: int = model.n_vocab()
        self.context_length: int = scheduler.context_length
        self.parallel = len(scheduler.slots)
        self._bos: int = model.token_bos()
        eos = model.token_eos()
        self._chat_template = ChatTemplate(
            identifier, model.metadata().get("tokenizer.chat_template"),
            bos_text=model.token_get_text(self._bos) if self._bos >= 0 else "",
            eos_text=model.token_get_text(eos) if eos >= 0 else "")

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        if len(text) <= INLINE_TOKENIZE_CHARS:
            return self._model.tokenize(text.encode("utf-8"), add_bos, special)
        return await anyio.to_thread.run_sync(self._model.tokenize, text.encode("utf-8"), add_bos, special)

    async def detokenize(self, tokens: list[int]) -> str:
        self._check_ids(tokens, "tokens")
        data = await anyio.to_thread.run_sync(lambda: self._model.detokenize(tokens, special=True))
        return data.decode("utf-8", errors="replace")

    async def slots(self) -> list[SlotState]:
        """What each slot holds right now (read on the model thread, between two steps)."""
        return await asyncio.wrap_future(self._scheduler.call(
            lambda sched: [SlotState(s.busy, len(s.cached), s.reused, s.admitted_step, s.first_token_step)
                           for s in sched.slots]))

    def usage(self) -> EngineLoad:
        return self._scheduler.usage()

    def close(self) -> None:
        self._scheduler.close()

    def render_chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                    add_generation_prompt: bool = True) -> str:
        return self._chat_template.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)

    async def _encode_prompt(self, text: str) -> list[int]:
        tokens = await self.tokenize(text, add_bos=True, special=True)
        if len(tokens) >= 2 and tokens[0] == tokens[1] == self._bos:
            tokens = tokens[1:]  # the template already wrote the BOS text
        return tokens

    async def _start(self, tokens: list[int], options: SamplingOptions, channel: Channel[TokenEvent | Finish]
                     ) -> None:
        grammar = await self._grammar(options)
        self._scheduler.submit(GenerationRequest(tokens, options, grammar, channel))

    async def _grammar(self, options: SamplingOptions) -> str | None:
        if options.json_schema is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                text = json_schema_to_gbnf(json.dumps(options.json_schema))
            except Exception as exc:  # noqa: BLE001 - the converter raises bare Exceptions on bad schemas
                raise GrammarError(f"the JSON schema cannot be turned into a grammar: {exc}",
                                   field="json_schema") from None
            field = "json_schema"
        elif options.grammar is not None:
            text, field = options.grammar, "grammar"
        else:
            return None
        if not await anyio.to_thread.run_sync(self._grammar_parses, text):
            raise GrammarError("the grammar does not parse (GBNF with a 'root' rule expected)", field=field)
        return text

    def _grammar_parses(self, text: str) -> bool:
        # An unparsable grammar gives a NULL sampler, which would crash once added to a chain.
        sampler = self._lib.llama_sampler_init_grammar(self._model.vocab, text.encode("utf-8"), b"root")
        if not sampler:
            return False
        self._lib.llama_sampler_free(sampler)
        return True


@dataclass(frozen=True)
class SlotState:
    """One slot of a chat model: serving a request or free, how many tokens its KV cache holds,
    how many prompt tokens of its latest request came from a cache (its own or another slot's),
    and in which decode steps that request was admitted and sampled its first token."""

    busy: bool
    cached_tokens: int
    reused_tokens: int = 0
    admitted_step: int = 0  # steps the model had decoded before the request was admitted
    first_token_step: int = 0  # the step that sampled its first token (0: not yet)


_backend_ready = False


def has_amx(lib: Any) -> bool:
    """Whether llama.cpp would put quantised weights in its AMX buffers on this CPU.

    On an Intel Xeon with AMX (the 2-core machine since 2026-12-02 17:00) the vendored
    llama.cpp's AMX matrix product crashes the process (SIGSEGV in ggml_backend_amx_mul_mat) on
    the first batch of two or more tokens of SmolLM2 Q4_1, as ggml-org/llama.cpp#20824 reports for
    other models. The weights then stay in plain CPU buffers (`use_extra_bufts` off, llama-server's
    `--no-repack`); that also turns off the CPU repacking of Q4_0/Q4_K/Q8_0 weights on such a CPU,
    and costs nothing for Q4_1 (which only AMX repacks).
    """
    return b"AMX_INT8 = 1" in lib.llama_print_system_info()


def _new_batched_context(path: Path, opts: LlamaCppOptions) -> tuple[Any, Any]:
    """Load the model and make one context with `opts.parallel` sequences of `opts.n_ctx` cells each."""
    import llama_cpp
    from llama_cpp._internals import LlamaContext, LlamaModel
    from llama_cpp._logger import set_verbose

    global _backend_ready
    if not _backend_ready:
        set_verbose(False)
        llama_cpp.llama_backend_init()
        _backend_ready = True
    model_params = llama_cpp.llama_model_default_params()
    model_params.use_mmap = opts.use_mmap
    model_params.use_extra_bufts = not has_amx(llama_cpp)
    try:
        model = LlamaModel(path_model=str(path), params=model_params, verbose=False)
    except ValueError as exc:
        log.warning("llama.cpp could not load %s: %s", path, exc)
        raise InvalidValueError(f"cannot load model file {path.name}: llama.cpp rejected it", field="path") from None
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = opts.n_ctx * opts.parallel
    params.n_seq_max = opts.parallel
    params.kv_unified = False  # each sequence its own n_ctx cells: N slots cost N contexts' KV, no more
    params.n_batch = opts.n_batch
    params.n_ubatch = min(opts.n_batch, 512)
    params.n_threads, params.n_threads_batch = opts.n_threads, opts.n_threads_batch
    # llama-server's default "auto" turns flash attention on for the CPU backend: one stream
    # decodes ~5% faster with it, eight streams in one batch ~10% (docs/benchmarks.md)
    params.flash_attn_type = {None: llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, True: llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                              False: llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}[opts.flash_attn]
    params.no_perf = True
    try:
        ctx = LlamaContext(model=model, params=params, verbose=False)
    except ValueError as exc:
        model.close()
        log.warning("llama.cpp could not make a context for %s: %s", path, exc)
        raise InvalidValueError(f"cannot load model file {path.name}: llama.cpp could not create a context "
                                f"of {opts.parallel} x {opts.n_ctx} tokens", field="options") from None
    return model, ctx


async def start_encoder(identifier: str, path: Path, opts: LlamaCppOptions, *, max_queue: int
                        ) -> tuple[ModelWorker[Any], Any]:
    """A worker thread holding an encoder `llama_cpp.Llama` (embeddings or rank scores) for `path`."""
    worker: ModelWorker[Any] = ModelWorker(identifier, lambda: _new_llama(path, opts, embedding=True),
                                           max_queue=max_queue)
    return worker, await worker.start()


class LlamaCppEmbeddingEngine:
    """An embedding GGUF (BERT-style encoder with pooling) behind one worker thread (`EmbeddingEngine`)."""

    @classmethod
    async def load(cls, identifier: str, path: Path, *, options: Mapping[str, Any] | None = None,
                   context_length: int | None = None, max_queue: int = DEFAULT_MAX_QUEUE
                   ) -> LlamaCppEmbeddingEngine:
        """Start the worker and load the model on it; `options` are LlamaCppOptions keys plus max_queue."""
        options = dict(options or {})
        opts = LlamaCppOptions.from_spec(options, context_length=context_length, embedding=True,
                                         trained_context=await trained_context(path))
        worker, llama = await start_encoder(identifier, path, opts, max_queue=int(options.get("max_queue", max_queue)))
        engine = cls(identifier, worker, llama, max_waiting=int(options.get("max_queue", max_queue)))
        if llama.pooling_type() == POOLING_TYPES["none"]:
            await anyio.to_thread.run_sync(engine.close)
            raise InvalidValueError(f"model {identifier} has no pooling; set options.pooling to mean or cls",
                                    field="options")
        return engine

    def __init__(self, identifier: str, worker: ModelWorker[Any], llama: Any, *,
                 max_waiting: int = DEFAULT_MAX_QUEUE) -> None:
        self.identifier = identifier
        self._worker = worker
        self._llama = llama
        # Concurrent requests share batches (ggstack.engines.coalesce).
        self._batches: Coalescer[Any] = Coalescer(worker, _embed_batch, max_waiting=max_waiting)
        self.n_vocab: int = llama.n_vocab()
        self.dimension: int = llama.n_embd()
        # llama.cpp pads n_ctx up to a multiple of 256, but an encoder input must fit one batch
        self.context_length = min(llama.n_ctx(), llama.n_batch)

    async def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        if not inputs:
            return [], 0
        if all(isinstance(x, str) for x in inputs):
            texts = [str(x) for x in inputs]
            token_lists = await self._tokenized(texts)
        else:
            token_lists = [list(x) for x in inputs if not isinstance(x, str)]
            if len(token_lists) != len(inputs):
                raise InvalidValueError("input must be all strings or all token arrays", field="input")
            for toks in token_lists:
                check_token_ids(toks, self.n_vocab, "input")
        for i, toks in enumerate(token_lists):
            if not toks:
                raise InvalidValueError(f"input {i} is empty", field="input")
            if len(toks) > self.context_length:
                raise ContextOverflowError(
                    f"input {i} has {len(toks)} tokens, more than this model's maximum context length of "
                    f"{self.context_length} tokens", tokens=len(toks), limit=self.context_length)
        vectors = await self._batches.call(token_lists)
        vectors = vectors.astype(np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        return vectors.tolist(), sum(len(t) for t in token_lists)

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return await anyio.to_thread.run_sync(self._llama.tokenize, text.encode("utf-8"), add_bos, special)

    async def _tokenized(self, texts: list[str]) -> list[list[int]]:
        """Short inputs (a search query) on the event loop, as the chat engine does: the hop to
        a worker thread and back cost more than tokenising a few words."""
        def run() -> list[list[int]]:
            return [self._llama.tokenize(t.encode("utf-8"), True, False) for t in texts]

        if sum(len(t) for t in texts) <= INLINE_TOKENIZE_CHARS:
            return run()
        return await anyio.to_thread.run_sync(run)

    def close(self) -> None:
        """Stop the worker thread and free the model (blocking; call from a thread)."""
        self._worker.close()


def _embed_batch(llama: Any, token_lists: list[list[int]]) -> np.ndarray:
    """Worker thread: pooled embeddings for all inputs."""
    return pooled_rows(llama, token_lists, llama.n_embd())


def pooled_rows(llama: Any, token_lists: list[list[int]], width: int) -> np.ndarray:
    """Worker thread: each sequence's pooled output (`width` floats), packing as many sequences
    per decode as fit. `width` must be what the pooling gives: n_embd, or n_cls_out for rank."""
    import llama_cpp

    n_batch = llama.n_batch
    n_seq_max = llama.context_params.n_seq_max
    out = np.empty((len(token_lists), width), dtype=np.float32)
    batch, used = llama._batch, 0
    pending: list[int] = []

    def decode() -> None:
        threads = 1 if used <= SMALL_BATCH_TOKENS else llama.n_threads_batch
        llama_cpp.llama_set_n_threads(llama.ctx, threads, threads)
        llama._ctx.kv_cache_clear()
        llama._ctx.decode(batch)
        for seq, index in enumerate(pending):
            ptr = llama_cpp.llama_get_embeddings_seq(llama.ctx, seq)
            out[index] = np.ctypeslib.as_array(ptr, shape=(out.shape[1],))
        batch.reset()

    batch.reset()
    for index, toks in enumerate(token_lists):
        if pending and (used + len(toks) > n_batch or len(pending) >= n_seq_max):
            decode()
            pending, used = [], 0
        batch.add_sequence(toks, len(pending), True)
        pending.append(index)
        used += len(toks)
    decode()
    llama._ctx.kv_cache_clear()
    return out
