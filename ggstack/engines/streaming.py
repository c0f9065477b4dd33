"""Engine-independent pieces of a token stream: stop-sequence holding, the thread->loop channel,
and the chat-engine base both engines build on."""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any, Generic, TypeVar

import numpy as np

from ggstack.core.errors import BusyError, ContextOverflowError, InvalidValueError
from ggstack.engines.base import Finish, SamplingOptions, TokenEvent

T = TypeVar("T")


class StopBuffer:
    """Holds back output that could be the start of a stop sequence, so no stop string is ever emitted.

    A stop string can span tokens ("ST" + "OP"), so text that is a prefix of one is kept until
    the next token settles it. Events are released whole; only the event in which a stop
    string begins is cut, at the stop string's first character.
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending: list[TokenEvent] = []
        self._text = ""

    def push(self, event: TokenEvent) -> tuple[list[TokenEvent], bool]:
        """Add one token's event; return the events now safe to emit and whether a stop string was hit."""
        self._pending.append(event)
        self._text += event.text
        if not self._stops:
            return self.flush(), False
        hits = [i for i in (self._text.find(s) for s in self._stops) if i >= 0]
        if hits:
            return self._cut(min(hits)), True
        return self._release(len(self._text) - self._held_suffix()), False

    def flush(self) -> list[TokenEvent]:
        """Everything still held (the stream ended without completing a stop string)."""
        out, self._pending, self._text = self._pending, [], ""
        return out

    def _held_suffix(self) -> int:
        """Length of the longest suffix of the held text that begins some stop string."""
        longest = min(len(self._text), max(len(s) for s in self._stops) - 1)
        for k in range(longest, 0, -1):
            tail = self._text[-k:]
            if any(s.startswith(tail) for s in self._stops):
                return k
        return 0

    def _release(self, n_chars: int) -> list[TokenEvent]:
        out: list[TokenEvent] = []
        used = 0
        while self._pending and used + len(self._pending[0].text) <= n_chars:
            event = self._pending.pop(0)
            used += len(event.text)
            out.append(event)
        self._text = self._text[used:]
        return out

    def _cut(self, at: int) -> list[TokenEvent]:
        out = self._release(at)
        remaining = at - sum(len(e.text) for e in out)
        if remaining > 0 and self._pending:
            out.append(replace(self._pending[0], text=self._pending[0].text[:remaining]))
        self._pending, self._text = [], ""
        return out


class Channel(Generic[T]):
    """A bounded queue from one worker thread to one asyncio consumer.

    The worker blocks on a semaphore of free slots (never on the event loop), then hands the
    item over with `call_soon_threadsafe`; the asyncio side is unbounded so that hand-over can
    never fail, and the semaphore is what bounds memory. `cancelled` is the consumer's "stop
    now" flag: the worker checks it between tokens and while waiting for a slot, which is what
    ends generation within a token of a client going away. `end` is called once the job is
    over however it ended, so a consumer never waits for a worker that will not answer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = 32) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[tuple[T | BaseException | None, bool]] = asyncio.Queue()
        self._slots = threading.Semaphore(size)
        self.cancelled = threading.Event()

    def put(self, item: T) -> bool:
        """Worker side: deliver `item`; False once the consumer has gone (stop working)."""
        while not self._slots.acquire(timeout=0.05):
            if self.cancelled.is_set():
                return False
        if self.cancelled.is_set():
            return False
        return self._send(item, True)

    def offer(self, item: T, bag: Mailbag | None = None) -> bool:
        """Worker side, never blocks: deliver `item` if the consumer has room, else False (try later).

        A scheduler serving many streams on one thread uses this, so one slow reader pauses
        only its own stream. With `bag`, the item waits there until the bag is posted.
        """
        if self.cancelled.is_set() or not self._slots.acquire(blocking=False):
            return False
        return self._send(item, True, bag)

    def push(self, item: T, bag: Mailbag | None = None) -> None:
        """Worker side, unbounded: for the few events that end a stream, so the worker is done at once."""
        self._send(item, False, bag)

    def end(self, error: BaseException | None = None, bag: Mailbag | None = None) -> None:
        """Any thread: no more items will come; `error` (if any) is raised to the consumer."""
        self._send(error, False, bag)

    def _send(self, item: T | BaseException | None, counted: bool, bag: Mailbag | None = None) -> bool:
        if bag is not None:
            bag.add(self, (item, counted))
            return True
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (item, counted))
        except RuntimeError:  # the loop is closed: nobody will ever read this
            self.cancelled.set()
            return False
        return True

    async def get(self) -> T | None:
        """Consumer side: the next item, None after `end()`; an error passed to `end` is raised."""
        item, counted = await self._queue.get()
        if counted:
            self._slots.release()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Consumer side: tell the worker to stop producing."""
        self.cancelled.set()


class Mailbag:
    """Items for many channels, handed to their event loops in one call per loop.

    A scheduler produces one event per stream per step. Sent one by one, each wakes the
    event loop, which then takes the GIL to turn it into an SSE frame while the model thread
    is still sampling the other streams, so the model thread waits for the GIL once per
    stream. Posted together after the step, the loop does that work while the model thread
    is inside `llama_decode`, which runs without the GIL (8 streams of SmolLM2-135M: the step's
    wall time outside the decode fell from 4.4 to 1.7 ms). Only the thread that fills the bag
    posts it; items for one channel keep their order.
    """

    def __init__(self) -> None:
        self._items: list[tuple[Channel[Any], tuple[Any, bool]]] = []

    def add(self, channel: Channel[Any], entry: tuple[Any, bool]) -> None:
        self._items.append((channel, entry))

    def __len__(self) -> int:
        """Items collected and not yet posted."""
        return len(self._items)

    def post(self) -> None:
        """Hand everything collected so far to the channels' loops."""
        if not self._items:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Channel[Any], tuple[Any, bool]]]] = {}
        for channel, entry in self._items:
            by_loop.setdefault(channel._loop, []).append((channel, entry))
        self._items = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop is closed: nobody will ever read these
                for channel, _ in items:
                    channel.cancelled.set()


def _deliver(items: list[tuple[Channel[Any], tuple[Any, bool]]]) -> None:
    for channel, entry in items:
        channel._queue.put_nowait(entry)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities from raw logits, shifted by the maximum first so exp() cannot overflow."""
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def check_token_ids(tokens: list[int], n_vocab: int, field: str) -> None:
    """Refuse ids outside the vocabulary: llama.cpp throws across the C boundary on them, aborting the process."""
    bad = next((t for t in tokens if not isinstance(t, int) or not 0 <= t < n_vocab), None)
    if bad is not None:
        raise InvalidValueError(f"token id {bad!r} is not in the model's vocabulary of {n_vocab}", field=field)


class StreamingChatEngine(abc.ABC):
    """What both chat engines share: prompt checks and the stream a handler iterates.

    A subclass tokenizes and starts a generation on its own thread (`_start`), which reports
    through a `Channel`; `generate` turns that channel into the `ChatEngine.generate` stream.
    Errors found before generation (empty prompt, prompt over the context, bad token ids,
    a full queue) are raised by the stream's first `__anext__`.
    """

    identifier: str
    context_length: int
    n_vocab: int
    #: Completion tokens of finished generations (for /metrics); only the event loop adds to it.
    tokens_generated: int = 0

    @abc.abstractmethod
    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        ...

    @abc.abstractmethod
    async def _start(self, tokens: list[int], options: SamplingOptions, channel: Channel[TokenEvent | Finish]
                     ) -> None:
        """Queue the generation of `tokens` on the model's thread, reporting to `channel`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the model's thread and free the model (blocking; call from a thread)."""

    async def _prompt_tokens(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            tokens = await self._encode_prompt(prompt)
        else:
            tokens = list(prompt)
            self._check_ids(tokens, "prompt")
        if not tokens:
            raise InvalidValueError("the prompt is empty", field="prompt")
        if len(tokens) >= self.context_length:
            raise ContextOverflowError(
                f"This model's maximum context length is {self.context_length} tokens, but the prompt has "
                f"{len(tokens)} tokens", tokens=len(tokens), limit=self.context_length)
        return tokens

    def _check_ids(self, tokens: list[int], field: str) -> None:
        check_token_ids(tokens, self.n_vocab, field)

    async def _encode_prompt(self, text: str) -> list[int]:
        """The prompt's token ids (a subclass may fix up what its tokenizer makes of a template)."""
        return await self.tokenize(text, add_bos=True, special=True)

    async def generate(self, prompt: str | list[int], options: SamplingOptions) -> AsyncGenerator[TokenEvent | Finish, None]:
        tokens = await self._prompt_tokens(prompt)
        if options.logit_bias:
            self._check_ids(list(options.logit_bias), "logit_bias")
        channel: Channel[TokenEvent | Finish] = Channel(asyncio.get_running_loop())
        await self._start(tokens, options, channel)
        try:
            while (item := await channel.get()) is not None:
                if isinstance(item, Finish):
                    # Before the yield: a consumer that stops at Finish never resumes this generator.
                    self.tokens_generated += item.completion_tokens
                yield item
                if isinstance(item, Finish):
                    return
            raise BusyError(f"model '{self.identifier}' was unloaded during generation", retry_after=1)
        finally:
            channel.close()
