"""The llama-cpp-python engines: chat/completion generation and embeddings on GGUF models.

Each engine owns one `ModelWorker` thread holding its `llama_cpp.Llama`; decoding, sampling
and embedding run only there. Tokenising is done on anyio's thread pool instead, because it
only reads the vocabulary (llama.cpp's own server tokenises on its HTTP threads too), and a
prompt that is too long must be refused before it waits in the model's queue.

Measured on SmolLM2-135M (2 cores): `logits_all=True` allocates n_ctx x n_vocab floats
(2048 x 49152 x 4 = 400 MB) and copies every row on each decode, so it is never used.
Logprobs read the last position's logits (`llama_get_logits_ith(ctx, -1)`), which llama.cpp
keeps anyway for sampling; the cost is one log-softmax per token and only when asked for.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from ggstack.engines.base import Finish, SamplingOptions, TokenEvent
from ggstack.engines.gguf_info import GGUFFormatError, inspect_gguf
from ggstack.engines.streaming import Channel, StopBuffer
from ggstack.engines.worker import DEFAULT_MAX_QUEUE, ModelWorker
from ggstack.http.errors import InvalidRequest, Overloaded

log = logging.getLogger("ggstack.engines")

POOLING_TYPES = {"unspecified": -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
DEFAULT_CHAT_CONTEXT = 4096
DEFAULT_EMBEDDING_CONTEXT = 512


def check_embedding_batch(n_batch: int) -> None:
    """Refuse a batch size that would abort the whole process inside llama.cpp.

    With embedding=True, llama.cpp 0.3.36 aborts (not raises) at context creation when
    n_batch is above 256 and not a multiple of 256, so this must be checked before `Llama()`.
    """
    if n_batch < 1 or (n_batch > 256 and n_batch % 256):
        raise InvalidRequest(f"embedding context {n_batch} must be at most 256 or a multiple of 256",
                             param="context_length")


@dataclass(frozen=True)
class LlamaCppOptions:
    """Load-time settings, from a model spec's `options` (unknown keys are an error)."""

    n_ctx: int
    n_batch: int
    n_threads: int
    n_threads_batch: int
    flash_attn: bool
    pooling_type: int
    use_mmap: bool

    @classmethod
    def from_spec(cls, options: Mapping[str, Any], *, context_length: int | None, embedding: bool,
                  trained_context: int | None) -> LlamaCppOptions:
        known = {"n_ctx", "n_batch", "n_threads", "n_threads_batch", "flash_attn", "pooling", "use_mmap",
                 "max_queue"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidRequest(f"unknown llama-cpp option(s): {', '.join(unknown)}", param="options")
        # Half the cores by default: on the 2-core target a 2-thread decode spin-waits against
        # any other busy process and fell from ~50 to ~5 tok/s on SmolLM2 (1 thread: 40-57 tok/s).
        cpus = max(1, (os.cpu_count() or 1) // 2)
        default_ctx = DEFAULT_EMBEDDING_CONTEXT if embedding else DEFAULT_CHAT_CONTEXT
        n_ctx = int(options.get("n_ctx") or context_length or default_ctx)
        if trained_context and (embedding or context_length is None and "n_ctx" not in options):
            # an encoder has exactly trained_context position embeddings; a decoder only
            # gets the cap when the user did not ask for more explicitly
            n_ctx = min(n_ctx, trained_context)
        if n_ctx < 8:
            raise InvalidRequest(f"context length {n_ctx} is too small", param="context_length")
        pooling = str(options.get("pooling", "unspecified")).lower()
        if pooling not in POOLING_TYPES or (embedding and pooling == "none"):
            raise InvalidRequest(f"pooling must be one of mean, cls, last (got {pooling})", param="options")
        if embedding:
            n_batch = n_ctx  # an encoder sees a whole input in one ubatch
            check_embedding_batch(n_batch)
        else:
            n_batch = min(int(options.get("n_batch", 512)), n_ctx)
        return cls(n_ctx=n_ctx, n_batch=n_batch,
                   n_threads=int(options.get("n_threads", cpus)),
                   n_threads_batch=int(options.get("n_threads_batch", cpus)),
                   flash_attn=bool(options.get("flash_attn", embedding)),
                   pooling_type=POOLING_TYPES[pooling], use_mmap=bool(options.get("use_mmap", True)))


async def _trained_context(path: Path) -> int | None:
    try:
        info = await anyio.to_thread.run_sync(inspect_gguf, path)
    except GGUFFormatError as exc:
        raise InvalidRequest(f"cannot load model file {path.name}: {exc}", param="path") from None
    return info.context_length


def _new_llama(path: Path, opts: LlamaCppOptions, *, embedding: bool) -> Any:
    import llama_cpp  # heavy import, and only needed once a model is used

    if embedding:
        check_embedding_batch(opts.n_batch)
    try:
        return llama_cpp.Llama(
            model_path=str(path), n_ctx=opts.n_ctx, n_batch=opts.n_batch,
            n_ubatch=opts.n_batch if embedding else min(opts.n_batch, 512),
            n_threads=opts.n_threads, n_threads_batch=opts.n_threads_batch, flash_attn=opts.flash_attn,
            embedding=embedding, pooling_type=opts.pooling_type, use_mmap=opts.use_mmap, verbose=False)
    except (ValueError, RuntimeError) as exc:
        log.warning("llama.cpp could not load %s: %s", path, exc)
        raise InvalidRequest(f"cannot load model file {path.name}: llama.cpp rejected it") from None


class _LlamaCppModel:
    """What both engines share: the worker, the loaded model and token-id validation."""

    def __init__(self, identifier: str, worker: ModelWorker[Any], llama: Any) -> None:
        import llama_cpp

        self.identifier = identifier
        self._worker = worker
        self._llama = llama
        self._lib = llama_cpp
        self._n_vocab: int = llama.n_vocab()
        self.context_length: int = llama.n_ctx()

    def _check_ids(self, tokens: list[int], param: str) -> None:
        # an out-of-range id makes llama.cpp throw across the C boundary, which aborts the process
        bad = next((t for t in tokens if not isinstance(t, int) or not 0 <= t < self._n_vocab), None)
        if bad is not None:
            raise InvalidRequest(f"token id {bad!r} is not in the model's vocabulary of {self._n_vocab}",
                                 param=param)

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return await anyio.to_thread.run_sync(self._llama.tokenize, text.encode("utf-8"), add_bos, special)

    async def detokenize(self, tokens: list[int]) -> str:
        self._check_ids(tokens, "tokens")
        data = await anyio.to_thread.run_sync(lambda: self._llama.detokenize(tokens, special=True))
        return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Stop the worker thread and free the model (blocking; call from a thread)."""
        self._worker.close()


class LlamaCppChatEngine(_LlamaCppModel):
    """A text-generation GGUF behind one worker thread (implements `ChatEngine`)."""

    @classmethod
    async def load(cls, identifier: str, path: Path, *, options: Mapping[str, Any] | None = None,
                   context_length: int | None = None, max_queue: int = DEFAULT_MAX_QUEUE) -> LlamaCppChatEngine:
        """Start the worker and load the model on it; `options` are LlamaCppOptions keys plus max_queue."""
        options = dict(options or {})
        opts = LlamaCppOptions.from_spec(options, context_length=context_length, embedding=False,
                                         trained_context=await _trained_context(path))
        worker: ModelWorker[Any] = ModelWorker(identifier, lambda: _new_llama(path, opts, embedding=False),
                                               max_queue=int(options.get("max_queue", max_queue)))
        llama = await worker.start()
        return cls(identifier, worker, llama)

    def __init__(self, identifier: str, worker: ModelWorker[Any], llama: Any) -> None:
        super().__init__(identifier, worker, llama)
        model = llama._model
        self._bos: int = llama.token_bos()
        self._template: str | None = llama.metadata.get("tokenizer.chat_template")
        self._bos_text = model.token_get_text(self._bos) if self._bos >= 0 else ""
        eos = llama.token_eos()
        self._eos_text = model.token_get_text(eos) if eos >= 0 else ""
        self._formatters: dict[bool, Any] = {}

    def render_chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                    add_generation_prompt: bool = True) -> str:
        if not self._template:
            raise InvalidRequest(f"model {self.identifier} has no chat template", param="model")
        from jinja2 import TemplateError
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = self._formatters.get(add_generation_prompt)
        if formatter is None:
            try:
                formatter = Jinja2ChatFormatter(self._template, self._eos_text, self._bos_text,
                                                add_generation_prompt=add_generation_prompt)
            except TemplateError:
                raise InvalidRequest(f"model {self.identifier} has a chat template that does not parse",
                                     param="model") from None
            self._formatters[add_generation_prompt] = formatter
        try:
            return formatter(messages=messages, tools=tools).prompt
        except (TemplateError, ValueError, TypeError, KeyError) as exc:
            # the template's own raise_exception() messages are written for the caller
            raise InvalidRequest(f"the chat template of model {self.identifier} rejected the messages: {exc}",
                                 param="messages") from None

    async def _prompt_tokens(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            tokens = await self.tokenize(prompt, add_bos=True, special=True)
            if len(tokens) >= 2 and tokens[0] == tokens[1] == self._bos:
                tokens = tokens[1:]  # the template already wrote the BOS text
        else:
            tokens = list(prompt)
            self._check_ids(tokens, "prompt")
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if len(tokens) >= self.context_length:
            raise InvalidRequest(
                f"This model's maximum context length is {self.context_length} tokens, but the prompt has "
                f"{len(tokens)} tokens", param="messages", code="context_length_exceeded")
        return tokens

    async def _grammar(self, options: SamplingOptions) -> str | None:
        if options.json_schema is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                text = json_schema_to_gbnf(json.dumps(options.json_schema))
            except Exception as exc:  # noqa: BLE001 - the converter raises bare Exceptions on bad schemas
                raise InvalidRequest(f"the JSON schema cannot be turned into a grammar: {exc}",
                                     param="response_format") from None
            param = "response_format"
        elif options.grammar is not None:
            text, param = options.grammar, "grammar"
        else:
            return None
        if not await anyio.to_thread.run_sync(self._grammar_parses, text):
            raise InvalidRequest("the grammar does not parse (GBNF with a 'root' rule expected)", param=param)
        return text

    def _grammar_parses(self, text: str) -> bool:
        # An unparsable grammar gives a NULL sampler, which would crash once added to a chain.
        sampler = self._lib.llama_sampler_init_grammar(self._llama._model.vocab, text.encode("utf-8"), b"root")
        if not sampler:
            return False
        self._lib.llama_sampler_free(sampler)
        return True

    async def generate(self, prompt: str | list[int], options: SamplingOptions) -> AsyncIterator[TokenEvent | Finish]:
        tokens = await self._prompt_tokens(prompt)
        grammar = await self._grammar(options)
        channel: Channel[TokenEvent | Finish] = Channel(asyncio.get_running_loop())
        job = self._worker.submit(lambda llama: _run_generation(llama, tokens, options, grammar, channel),
                                  cancelled=channel.cancelled)
        job.result.add_done_callback(lambda fut: channel.end(_job_error(fut)))
        try:
            while (item := await channel.get()) is not None:
                yield item
                if isinstance(item, Finish):
                    return
            raise Overloaded(f"model '{self.identifier}' was unloaded during generation", retry_after=1)
        finally:
            channel.close()


def _job_error(fut: Any) -> BaseException | None:
    if fut.cancelled():
        return None
    return fut.exception()


def _run_generation(llama: Any, tokens: list[int], o: SamplingOptions, grammar: str | None,
                    channel: Channel[TokenEvent | Finish]) -> None:
    """Worker thread: sample until EOS, a stop string, max_tokens or the end of the context."""
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    if channel.cancelled.is_set():
        return
    vocab = llama._model.vocab
    budget = llama.n_ctx() - len(tokens)  # tokens that still fit in the context
    limit = min(o.max_tokens or budget, budget)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    held = StopBuffer(o.stop)
    llama.set_seed(o.seed if o.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
    generator = llama.generate(
        tokens, top_k=o.top_k, top_p=o.top_p, min_p=o.min_p, temp=o.temperature,
        repeat_penalty=o.repeat_penalty, frequency_penalty=o.frequency_penalty,
        presence_penalty=o.presence_penalty, reset=True,
        grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None)
    produced, reason, last, hit_stop = 0, "length", -1, False
    try:
        for token in generator:
            if channel.cancelled.is_set():
                return
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "stop"
                break
            produced, last = produced + 1, token
            logprob, top = _logprobs(llama, token, o.logprobs) if o.logprobs is not None else (None, None)
            text = decoder.decode(_piece(vocab, token))
            released, stopped = held.push(TokenEvent(text, int(token), logprob, top))
            for event in released:
                if not channel.put(event):
                    return
            if stopped:
                reason, hit_stop = "stop", True
                break
            if produced >= limit:
                break
    finally:
        generator.close()
    tail = decoder.decode(b"", final=True)  # a UTF-8 sequence cut off by the stop: U+FFFD
    events = held.flush() + ([TokenEvent(tail, last)] if tail and not hit_stop else [])
    for event in events:
        if not channel.put(event):
            return
    channel.put(Finish(reason, len(tokens), produced))  # type: ignore[arg-type]


def _piece(vocab: Any, token: int) -> bytes:
    """The bytes of one token as it appears mid-text (leading space kept, control tokens empty)."""
    import ctypes

    import llama_cpp

    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    if n < 0:  # the piece is longer than the buffer; -n is the size it needs
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return buf.raw[:max(n, 0)]


def _logprobs(llama: Any, token: int, top_n: int) -> tuple[float, list[tuple[str, float]]]:
    """Logprob of `token` and the `top_n` likeliest alternatives, from the last decoded position."""
    n_vocab = llama.n_vocab()
    logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(n_vocab,)).astype(np.float64)
    shifted = logits - logits.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    top: list[tuple[str, float]] = []
    if top_n:
        best = np.argpartition(-logprobs, top_n - 1)[:top_n]
        for tid in best[np.argsort(-logprobs[best])]:
            piece = _piece(llama._model.vocab, int(tid))
            top.append((piece.decode("utf-8", errors="replace"), float(logprobs[tid])))
    return float(logprobs[token]), top


class LlamaCppEmbeddingEngine(_LlamaCppModel):
    """An embedding GGUF (BERT-style encoder with pooling) behind one worker thread (`EmbeddingEngine`)."""

    @classmethod
    async def load(cls, identifier: str, path: Path, *, options: Mapping[str, Any] | None = None,
                   context_length: int | None = None, max_queue: int = DEFAULT_MAX_QUEUE
                   ) -> LlamaCppEmbeddingEngine:
        """Start the worker and load the model on it; `options` are LlamaCppOptions keys plus max_queue."""
        options = dict(options or {})
        opts = LlamaCppOptions.from_spec(options, context_length=context_length, embedding=True,
                                         trained_context=await _trained_context(path))
        worker: ModelWorker[Any] = ModelWorker(identifier, lambda: _new_llama(path, opts, embedding=True),
                                               max_queue=int(options.get("max_queue", max_queue)))
        llama = await worker.start()
        engine = cls(identifier, worker, llama)
        if llama.pooling_type() == POOLING_TYPES["none"]:
            await anyio.to_thread.run_sync(engine.close)
            raise InvalidRequest(f"model {identifier} has no pooling; set options.pooling to mean or cls",
                                 param="options")
        return engine

    def __init__(self, identifier: str, worker: ModelWorker[Any], llama: Any) -> None:
        super().__init__(identifier, worker, llama)
        self.dimension: int = llama.n_embd()
        # llama.cpp pads n_ctx up to a multiple of 256, but an encoder input must fit one batch
        self.context_length = min(llama.n_ctx(), llama.n_batch)

    async def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        if not inputs:
            return [], 0
        if all(isinstance(x, str) for x in inputs):
            texts = [str(x) for x in inputs]
            token_lists = await anyio.to_thread.run_sync(
                lambda: [self._llama.tokenize(t.encode("utf-8"), True, False) for t in texts])
        else:
            token_lists = [list(x) for x in inputs if not isinstance(x, str)]
            if len(token_lists) != len(inputs):
                raise InvalidRequest("input must be all strings or all token arrays", param="input")
            for toks in token_lists:
                self._check_ids(toks, "input")
        for i, toks in enumerate(token_lists):
            if not toks:
                raise InvalidRequest(f"input {i} is empty", param="input")
            if len(toks) > self.context_length:
                raise InvalidRequest(
                    f"input {i} has {len(toks)} tokens, more than this model's maximum context length of "
                    f"{self.context_length} tokens", param="input", code="context_length_exceeded")
        vectors = await self._worker.call(lambda llama: _embed_batch(llama, token_lists))
        vectors = vectors.astype(np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        return vectors.tolist(), sum(len(t) for t in token_lists)


def _embed_batch(llama: Any, token_lists: list[list[int]]) -> np.ndarray:
    """Worker thread: pooled embeddings for all inputs, packing as many sequences per decode as fit."""
    import llama_cpp

    n_batch = llama.n_batch
    n_seq_max = llama.context_params.n_seq_max
    out = np.empty((len(token_lists), llama.n_embd()), dtype=np.float32)
    batch, pending, used = llama._batch, [], 0

    def decode() -> None:
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
