"""Continuous batching: one llama.cpp context, several sequences, one `llama_decode` per step.

A chat model owns one context with `n_slots` sequences (each with its own KV cache of
`context_length` cells, `kv_unified=false`, so N slots hold exactly N contexts' worth of KV).
One thread runs `BatchScheduler._main`; every step it
1. admits waiting requests into free slots (the slot whose cached tokens share the longest
   prefix with the new prompt, so a system prompt and earlier turns are not evaluated again;
   if another slot, busy or not, holds a longer prefix, its KV is copied over instead; where
   any free slot would do, shortest prompt first in order of sequence id, so llama.cpp cuts
   the step into few micro-batches, see `_place` and microbatch.py),
2. puts one token of every generating sequence into a batch, then fills what is left of
   `n_batch` with prompt chunks of sequences still prefilling, the shortest rest of a prompt
   first and then the oldest (a long prompt costs each step at most one batch, so running
   streams keep getting a token every step, and a short prompt is not held behind a long one:
   it gets its first token in its first step while the long one is still being read),
3. decodes that batch once and samples each sequence with its own llama.cpp sampler chain;
   the step's events go to the event loop in one hand-over (`Mailbag`), not one per stream.

Every request waiting at the start of a step is admitted in that step (up to the free slots),
and all their prompts share its batch as far as `n_batch` allows: a burst of requests pays
one prefill pass, the way llama-server's update_slots does it. A sequence's first token is
sampled in the step that decodes the end of its prompt, and handed over before the next
step's admissions (`Slot.admitted_step` and `Slot.first_token_step` record both).

A stream whose consumer stops reading is paused (its events wait in the slot's outbox; it is
left out of the batch) rather than blocking the thread; a cancelled stream frees its slot at
the next step. Everything llama.cpp is touched only from this thread.
"""

from __future__ import annotations

import codecs
import concurrent.futures
import ctypes
import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ggstack.core.errors import BusyError
from ggstack.engines.base import EngineLoad, Finish, FinishReason, SamplingOptions, TokenEvent
from ggstack.engines.microbatch import split_equal
from ggstack.engines.streaming import Channel, Mailbag, StopBuffer, log_softmax

log = logging.getLogger("ggstack.engines")

PENALTY_LAST_N = 64  # tokens the repeat/frequency/presence penalties look back over (llama.cpp's default)
IDLE_WAIT_S = 0.5  # how long the idle thread sleeps between checks of its closing flag
PAUSED_WAIT_S = 0.005  # how long to wait when every stream is paused on a slow consumer
# A prompt prefix another slot holds is copied when it saves at least this many prompt tokens:
# copying moves one slot's whole KV buffer (SmolLM2-135M: 6 ms for 1024 cells, 14 ms for 4096,
# measured at load ~6), while each prompt token costs ~5-10 ms of prefill on one core.
COPY_MIN_TOKENS = 8
# A new request may give up this many prompt tokens of cached prefix to be placed where its
# prompt joins the step's other prompts in fewer micro-batches: one more micro-batch costs
# about two tokens' time here (SmolLM2-135M, one thread; microbatch.py).
PLACE_SLACK = 1


@dataclass
class GenerationRequest:
    """A prompt to continue, how to sample it, and where its tokens go."""

    tokens: list[int]
    options: SamplingOptions
    grammar: str | None
    channel: Channel[TokenEvent | Finish]


class Slot:
    """One sequence of the context: its cached tokens and, while busy, one request's state."""

    def __init__(self, seq_id: int) -> None:
        self.seq_id = seq_id
        self.cached: list[int] = []  # tokens whose KV is in this sequence, positions 0..len-1
        self.reused = 0  # prompt tokens of the latest request taken from a cache instead of decoded
        self.last_used = 0
        self.arrival = 0  # admission order of the latest request (the tie-break for prefill order)
        self.admitted_step = 0  # steps decoded before the latest request was admitted
        self.first_token_step = 0  # the step whose decode gave its first sample (0: none yet)
        self.request: GenerationRequest | None = None
        self.sampler: Any = None
        self.pending: list[int] = []  # prompt tokens not yet decoded
        self.outbox: deque[TokenEvent] = deque()  # events the consumer has no room for yet
        self.next_token = -1  # sampled, not yet decoded
        self.produced = 0
        self.limit = 0
        self.decoder: codecs.IncrementalDecoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.held = StopBuffer([])

    @property
    def busy(self) -> bool:
        return self.request is not None

    def shared_prefix(self, tokens: list[int]) -> int:
        n = 0
        for a, b in zip(self.cached, tokens):
            if a != b:
                break
            n += 1
        return n


class BatchScheduler:
    """Owns a llama.cpp context with `n_slots` sequences and the thread that decodes them.

    `max_queue` bounds the requests waiting for a free slot; beyond that `submit` raises
    `BusyError` (429 with Retry-After). It is counted against the slots too, so a burst of
    `n_slots + max_queue` requests is accepted before the thread has admitted any.
    """

    def __init__(self, name: str, model: Any, ctx: Any, *, n_slots: int, n_batch: int, max_queue: int) -> None:
        import llama_cpp

        self.name = name
        self._lib = llama_cpp
        self._model = model
        self._ctx = ctx
        self._vocab = model.vocab
        self._n_vocab: int = model.n_vocab()
        self.n_batch = n_batch
        self.context_length: int = llama_cpp.llama_n_ctx_seq(ctx.ctx)
        self.slots = [Slot(i) for i in range(n_slots)]
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._waiting: queue.Queue[GenerationRequest] = queue.Queue()
        self.max_queue = max_queue
        self._capacity = threading.BoundedSemaphore(n_slots + max_queue)  # one per request not yet done
        self._controls: queue.Queue[tuple[Callable[[BatchScheduler], Any], concurrent.futures.Future[Any]]] = \
            queue.Queue()
        self._wake = threading.Event()
        self._bag = Mailbag()  # this step's events, posted to the event loop together
        self._pieces: dict[int, bytes | None] = {}  # token id -> its text bytes, None for end-of-generation
        self._closing = False
        self._clock = itertools.count(1)
        self._arrivals = itertools.count(1)
        self.steps = 0  # llama_decode calls so far (only the model thread writes it)
        self.n_ubatch: int = llama_cpp.llama_n_ubatch(ctx.ctx)
        self.micro_batches = 0  # micro-batches llama.cpp cut those calls into (microbatch.split_equal)
        self._thread = threading.Thread(target=self._main, name=f"model-{name}", daemon=True)

    # ---- any thread --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: GenerationRequest) -> None:
        """Queue a generation; BusyError if `max_queue` requests already wait for a slot."""
        if self._closing:
            raise BusyError(f"model '{self.name}' is being unloaded", retry_after=1)
        if not self._capacity.acquire(blocking=False):
            raise BusyError(f"model '{self.name}' has {self.max_queue} requests waiting; retry later",
                             retry_after=1)
        self._waiting.put(request)
        self._wake.set()

    def usage(self) -> EngineLoad:
        """Slots, slots in use and requests waiting, for /metrics: plain reads of values only the
        model thread writes, so a scrape never waits for a decode step."""
        return EngineLoad(len(self.slots), sum(slot.busy for slot in self.slots), self._waiting.qsize())

    def call(self, fn: Callable[[BatchScheduler], Any]) -> concurrent.futures.Future[Any]:
        """Run `fn(scheduler)` on the model thread between two steps (inspection, tests)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._controls.put((fn, future))
        self._wake.set()
        return future

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread (blocking); running and waiting requests end with BusyError."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("model thread %s did not stop within %.0fs", self.name, timeout)
                return
        self._abandon_all()  # a request submitted while the thread was stopping
        self._free()

    # ---- the model thread --------------------------------------------------------------------

    def _main(self) -> None:
        try:
            while not self._closing:
                self._wake.clear()
                self._release_cancelled()
                self._run_controls()
                self._admit()
                active = [s for s in self.slots if s.busy]
                if not (active and self._step(active)):
                    self._bag.post()  # a step posts its events itself, just before its decode
                    self._wake.wait(PAUSED_WAIT_S if active else IDLE_WAIT_S)
        except BaseException:
            log.exception("model thread %s failed", self.name)
            raise
        finally:
            self._closing = True
            self._abandon_all()

    def _release_cancelled(self) -> None:
        for slot in self.slots:
            if slot.request is not None and slot.request.channel.cancelled.is_set():
                self._release(slot)  # the consumer has gone: free the slot at once

    def _run_controls(self) -> None:
        while True:
            try:
                fn, future = self._controls.get_nowait()
            except queue.Empty:
                return
            self._bag.post()  # the last step's tokens go out first
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(self))
                except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                    future.set_exception(exc)

    def _admit(self) -> None:
        free = [s for s in self.slots if not s.busy]
        requests: list[GenerationRequest] = []
        while len(requests) < len(free):
            try:
                request = self._waiting.get_nowait()
            except queue.Empty:
                break
            if request.channel.cancelled.is_set():
                self._drop(request)
            else:
                requests.append(request)
        if not requests:
            return
        # the last step's tokens (a first token among them) go out before these admissions
        # build samplers (a grammar can take milliseconds) and copy prefixes' KV
        self._bag.post()
        for request, slot in self._place(requests, free):
            try:
                self._assign(slot, request)
            except Exception as exc:  # noqa: BLE001 - handed to the request's consumer
                self._drop(request, exc)

    def _place(self, requests: list[GenerationRequest], free: list[Slot]) -> list[tuple[GenerationRequest, Slot]]:
        """Which free slot each request admitted in one step takes.

        As one at a time: the slot whose own cache shares the longest prefix with the prompt,
        the least recently used of equals (so a busy server overwrites its oldest caches).
        What a whole step's admissions add: the requests whose own prefix is the same (within
        `PLACE_SLACK` tokens) on every free slot, such as a burst of new chats sharing a system
        prompt, take the least recently used slots among them in order of sequence id, shortest
        prompt rest first. A burst's prompts then lie on sequences in order of length, which
        llama.cpp cuts into the fewest micro-batches (one per distinct length where the ids are
        consecutive, see microbatch.py); in arrival order they made up to twice as many.
        """
        own = {id(r): self._prefixes(r.tokens) for r in requests}
        anywhere = [r for r in requests
                    if max(own[id(r)][s.seq_id] for s in free) - min(own[id(r)][s.seq_id] for s in free) <= PLACE_SLACK]
        loose = {id(r) for r in anywhere}
        placed: list[tuple[GenerationRequest, Slot]] = []
        open_slots = list(free)
        for request in (r for r in requests if id(r) not in loose):
            slot = max(open_slots, key=lambda s: (own[id(request)][s.seq_id], -s.last_used))
            open_slots.remove(slot)
            placed.append((request, slot))
        oldest = sorted(sorted(open_slots, key=lambda s: s.last_used)[:len(anywhere)], key=lambda s: s.seq_id)
        rests = {id(r): len(r.tokens) - self._expected_keep(own[id(r)], free) for r in anywhere}
        placed.extend(zip(sorted(anywhere, key=lambda r: rests[id(r)]), oldest))
        return placed

    @staticmethod
    def _expected_keep(prefixes: list[int], free: list[Slot]) -> int:
        """The cached prefix a request with these `prefixes` (one per slot) starts from on a free
        slot: a free slot's own, or another slot's when copying it saves COPY_MIN_TOKENS."""
        mine, anyone = max(prefixes[s.seq_id] for s in free), max(prefixes)
        return anyone if anyone - mine >= COPY_MIN_TOKENS else mine

    def _prefixes(self, tokens: list[int]) -> list[int]:
        """How many leading tokens of `tokens` each slot's cache holds; at most all but the last,
        whose logits the first sample needs."""
        return [min(slot.shared_prefix(tokens), len(tokens) - 1) for slot in self.slots]

    def _assign(self, slot: Slot, request: GenerationRequest) -> None:
        tokens, o = request.tokens, request.options
        slot.sampler = new_sampler(self._lib, self._vocab, self._n_vocab, o, request.grammar)
        keep = self._reuse_prefix(slot, tokens)
        slot.pending = tokens[keep:]
        slot.request = request
        slot.outbox.clear()
        slot.next_token, slot.produced = -1, 0
        slot.arrival, slot.admitted_step, slot.first_token_step = next(self._arrivals), self.steps, 0
        budget = self.context_length - len(tokens)  # tokens that still fit in this slot's context
        slot.limit = min(o.max_tokens or budget, budget)
        slot.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        slot.held = StopBuffer(o.stop)

    def _reuse_prefix(self, slot: Slot, tokens: list[int]) -> int:
        """Leave in `slot` the longest prefix of `tokens` whose KV any slot holds; return its length.

        The slot's own cache is used when it is (nearly) the best; otherwise another slot's
        sequence is copied over first (a system prompt that a busy or idle slot has already
        decoded is then not evaluated again: one prompt token costs about as much as one
        decoded token here, and the copy, done by llama.cpp before the next decode, moves the
        one slot's KV buffer). At least the last prompt token is always decoded again: its
        logits are what the first sample is drawn from.
        """
        prefixes = self._prefixes(tokens)  # afresh: an admission just before may have cut a slot's cache
        keep = prefixes[slot.seq_id]
        donor = max((s for s in self.slots if s is not slot), key=lambda s: prefixes[s.seq_id], default=None)
        shared = prefixes[donor.seq_id] if donor is not None else 0
        if donor is not None and shared - keep >= COPY_MIN_TOKENS:
            # a copy across KV streams must take the whole sequence; what is past the prefix goes below
            self._lib.llama_memory_seq_cp(self._ctx.memory, donor.seq_id, slot.seq_id, -1, -1)
            slot.cached, keep = donor.cached[:shared], shared
        if not self._lib.llama_memory_seq_rm(self._ctx.memory, slot.seq_id, keep, -1):
            self._lib.llama_memory_seq_rm(self._ctx.memory, slot.seq_id, -1, -1)
            keep = 0
        slot.cached = slot.cached[:keep]
        slot.reused = keep
        return keep

    def _step(self, active: list[Slot]) -> bool:
        """Decode one batch and sample; False if no sequence could take part (all paused)."""
        batch = self._batch
        batch.n_tokens = 0
        parts = [(slot, [slot.next_token], True) for slot in active if self._flush(slot) and not slot.pending]
        room = self.n_batch - len(parts)
        for slot in sorted((s for s in active if s.busy and s.pending), key=lambda s: (len(s.pending), s.arrival)):
            if room <= 0:
                break
            chunk, slot.pending = slot.pending[:room], slot.pending[room:]
            room -= len(chunk)
            parts.append((slot, chunk, not slot.pending))
        if not parts:
            return False
        # In sequence order: with one KV stream per sequence, llama.cpp splits a batch into
        # micro-batches of consecutive sequence ids, each a pass over all the weights (8 prompts
        # of 13 tokens: 501 ms of CPU in order, 534 ms shuffled).
        parts.sort(key=lambda part: part[0].seq_id)
        self.micro_batches += len(split_equal([(slot.seq_id, len(tokens)) for slot, tokens, _ in parts], self.n_ubatch))
        sampled: list[tuple[Slot, int]] = []
        for slot, tokens, last in parts:
            index = self._add(slot, tokens, logits_last=last)
            if last:
                sampled.append((slot, index))
        # the previous step's tokens go to the event loop now, so it formats them while this
        # thread is inside llama_decode (without the GIL) rather than while it builds the batch
        self._bag.post()
        rc = self._lib.llama_decode(self._ctx.ctx, batch)
        self.steps += 1
        if rc != 0:
            self._decode_failed(rc, [s for s in active if s.busy])
            return True
        for slot, index in sampled:
            if slot.busy:
                self._sample(slot, index)
        return True

    def _add(self, slot: Slot, tokens: list[int], *, logits_last: bool) -> int:
        """Append `tokens` of `slot` to the batch; return the batch index of the last one."""
        batch, pos = self._batch, len(slot.cached)
        for offset, token in enumerate(tokens):
            i = batch.n_tokens + offset
            batch.token[i] = token
            batch.pos[i] = pos + offset
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = slot.seq_id
            batch.logits[i] = 0
        last = batch.n_tokens + len(tokens) - 1
        batch.logits[last] = 1 if logits_last else 0
        batch.n_tokens += len(tokens)
        slot.cached.extend(tokens)
        slot.last_used = next(self._clock)
        return last

    def _sample(self, slot: Slot, index: int) -> None:
        request = slot.request
        assert request is not None
        o = request.options
        logprobs = self._logprobs(index) if o.logprobs is not None else None
        token = self._lib.llama_sampler_sample(slot.sampler, self._ctx.ctx, index)
        slot.first_token_step = slot.first_token_step or self.steps
        piece = self._piece(token)
        if piece is None:
            self._finish(slot, "stop", hit_stop=False)
            return
        slot.produced += 1
        slot.next_token = token
        logprob, top = top_logprobs(self._lib, self._vocab, logprobs, token, o.logprobs or 0) \
            if logprobs is not None else (None, None)
        text = slot.decoder.decode(piece)
        released, stopped = slot.held.push(TokenEvent(text, int(token), logprob, top))
        slot.outbox.extend(released)
        if stopped:
            self._finish(slot, "stop", hit_stop=True)
        elif slot.produced >= slot.limit:
            self._finish(slot, "length", hit_stop=False)
        else:
            self._flush(slot)

    def _piece(self, token: int) -> bytes | None:
        """The token's text bytes, or None if it ends generation; asked of llama.cpp once per token id
        (each ctypes call gives up the GIL, and the event loop may keep it for a while)."""
        try:
            return self._pieces[token]
        except KeyError:
            eog = self._lib.llama_vocab_is_eog(self._vocab, token)
            piece = self._pieces[token] = None if eog else token_piece(self._lib, self._vocab, token)
            return piece

    def _logprobs(self, index: int) -> np.ndarray:
        """Log-softmax of the raw logits at batch `index` (copied to Python only when asked for)."""
        ptr = self._lib.llama_get_logits_ith(self._ctx.ctx, index)
        return log_softmax(np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64))

    def _flush(self, slot: Slot) -> bool:
        """Hand queued events to the consumer; True once the outbox is empty."""
        assert slot.request is not None
        channel = slot.request.channel
        while slot.outbox and channel.offer(slot.outbox[0], self._bag):
            slot.outbox.popleft()
        return not slot.outbox

    def _finish(self, slot: Slot, reason: FinishReason, *, hit_stop: bool) -> None:
        request = slot.request
        assert request is not None
        tail = slot.decoder.decode(b"", final=True)  # a UTF-8 sequence cut off at the end: U+FFFD
        events = [*slot.outbox, *slot.held.flush()]
        if tail and not hit_stop:
            events.append(TokenEvent(tail, slot.next_token))
        # the last few events go out unbounded, so a finished slot is free at once
        for event in events:
            request.channel.push(event, self._bag)
        request.channel.push(Finish(reason, len(request.tokens), slot.produced), self._bag)
        self._release(slot)

    def _release(self, slot: Slot, error: BaseException | None = None) -> None:
        """End the slot's stream (with `error`, if any) and free the slot; its KV stays for prefix reuse."""
        if slot.request is not None:
            self._drop(slot.request, error)
        if slot.sampler is not None:
            self._lib.llama_sampler_free(slot.sampler)
        slot.request, slot.sampler = None, None
        slot.pending, slot.outbox = [], deque()

    def _drop(self, request: GenerationRequest, error: BaseException | None = None) -> None:
        """The request is over (done, failed or abandoned): end its stream and return its capacity."""
        request.channel.end(error, self._bag)
        self._capacity.release()

    def _decode_failed(self, rc: int, slots: list[Slot]) -> None:
        log.error("llama_decode returned %d on model %s; ending %d streams", rc, self.name, len(slots))
        for slot in slots:
            self._lib.llama_memory_seq_rm(self._ctx.memory, slot.seq_id, -1, -1)
            slot.cached = []
            self._release(slot, RuntimeError(f"llama_decode failed ({rc})"))

    def _abandon_all(self) -> None:
        gone = BusyError(f"model '{self.name}' was unloaded", retry_after=1)
        for slot in self.slots:
            if slot.request is not None:
                self._release(slot, gone)
        while True:
            try:
                self._drop(self._waiting.get_nowait(), gone)
            except queue.Empty:
                break
        self._bag.post()
        self._run_controls()

    def _free(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()
        self._model.close()


def new_sampler(lib: Any, vocab: Any, n_vocab: int, o: SamplingOptions, grammar: str | None) -> Any:
    """A llama.cpp sampler chain for one request, in llama-cpp-python's order.

    logit bias, penalties, grammar, then greedy (temperature 0) or top-k, top-p, min-p,
    temperature and a seeded draw. Raises ValueError if the grammar does not parse.
    """
    params = lib.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = lib.llama_sampler_chain_init(params)
    if o.logit_bias:
        biases = (lib.llama_logit_bias * len(o.logit_bias))(
            *(lib.llama_logit_bias(token=t, bias=b) for t, b in o.logit_bias.items()))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_logit_bias(n_vocab, len(o.logit_bias), biases))
    if o.repeat_penalty != 1.0 or o.frequency_penalty or o.presence_penalty:
        # llama-cpp-python 0.3.36 binds the five-argument form, vocabulary size first
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(
            n_vocab, PENALTY_LAST_N, o.repeat_penalty, o.frequency_penalty, o.presence_penalty))
    if grammar is not None:
        constraint = lib.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not constraint:  # NULL: adding it would crash the chain
            lib.llama_sampler_free(chain)
            raise ValueError("the grammar does not parse")
        lib.llama_sampler_chain_add(chain, constraint)
    if o.temperature == 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        return chain
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(o.top_k))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(o.top_p, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(o.min_p, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(o.temperature))
    seed = o.seed if o.seed is not None else lib.LLAMA_DEFAULT_SEED
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
    return chain


def token_piece(lib: Any, vocab: Any, token: int) -> bytes:
    """The bytes of one token as it appears mid-text (leading space kept, control tokens empty)."""
    buf = ctypes.create_string_buffer(64)
    n = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    if n < 0:  # the piece is longer than the buffer; -n is the size it needs
        buf = ctypes.create_string_buffer(-n)
        n = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return buf.raw[:max(n, 0)]


def top_logprobs(lib: Any, vocab: Any, logprobs: np.ndarray, token: int, top_n: int
                 ) -> tuple[float, list[tuple[str, float]]]:
    """Logprob of `token` and the `top_n` likeliest alternatives, as plain floats."""
    top: list[tuple[str, float]] = []
    if top_n:
        best = np.argpartition(-logprobs, top_n - 1)[:top_n]
        for tid in best[np.argsort(-logprobs[best])]:
            piece = token_piece(lib, vocab, int(tid))
            top.append((piece.decode("utf-8", errors="replace"), float(logprobs[tid])))
    return float(logprobs[token]), top
