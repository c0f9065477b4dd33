"""Running generations: n choices per prompt as one stream of API-neutral events.

Choices run one after another on the model's worker (it decodes one sequence at a time
anyway, and llama.cpp reuses the cached prompt for the next sample). The stream pulls the
engine's first item before yielding anything, so a prompt that does not fit, a bad grammar
or a full queue is raised by the first `__anext__` and still gets its real status code.
Closing the stream closes the engine's iterator, which stops the model within a token.

A whole (non-streamed) answer is the same events, collected (`Collector`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TypeVar

from ggstack.engines.base import ChatEngine, Finish, SamplingOptions, TokenEvent
from ggstack.inference.logprobs import TokenLogprob, from_event
from ggstack.inference.options import for_choice
from ggstack.inference.parsing import Call, OutputParser, Piece, PlainParser, Text
from ggstack.inference.tools import ToolCall

Prompt = str | list[int]
T = TypeVar("T")


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChoiceStarted:
    index: int


@dataclass(frozen=True)
class TextDelta:
    """Answer text; `logprobs` is None unless they were asked for."""

    index: int
    text: str
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class ToolCallDelta:
    """A complete call; `position` is its place among the choice's calls."""

    index: int
    position: int
    call: ToolCall


@dataclass(frozen=True)
class ChoiceFinished:
    """`finish_reason` is stop, length or tool_calls; token counts are this choice's."""

    index: int
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class Finished:
    """The last event: usage over all choices (each prompt counted once, as OpenAI does)."""

    usage: Usage


Event = ChoiceStarted | TextDelta | ToolCallDelta | ChoiceFinished | Finished


# -- whole answers -----------------------------------------------------------------------------


@dataclass
class Choice:
    """One finished choice. `text` is the answer (may be "" when the model only called tools)."""

    index: int
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    logprobs: list[TokenLogprob] | None = None
    completion_tokens: int = 0

    @property
    def sum_logprob(self) -> float:
        return sum(e.logprob for e in self.logprobs or ())


@dataclass
class Generation:
    choices: list[Choice]
    usage: Usage


class Collector:
    """Builds the whole answer from events (used directly, or beside a stream to store it)."""

    def __init__(self) -> None:
        self._choices: dict[int, Choice] = {}
        self.usage: Usage | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, Finished):
            self.usage = event.usage
            return
        choice = self._choices.setdefault(event.index, Choice(event.index))
        if isinstance(event, TextDelta):
            choice.text += event.text
            if event.logprobs is not None:
                choice.logprobs = (choice.logprobs or []) + list(event.logprobs)
        elif isinstance(event, ToolCallDelta):
            choice.tool_calls.append(event.call)
        elif isinstance(event, ChoiceFinished):
            choice.finish_reason = event.finish_reason
            choice.completion_tokens = event.completion_tokens

    def result(self) -> Generation:
        if self.usage is None:
            raise RuntimeError("the generation did not finish")
        return Generation([self._choices[i] for i in sorted(self._choices)], self.usage)


async def collect(events: AsyncGenerator[Event, None]) -> Generation:
    """The whole answer from a stream of events (the stream is closed either way)."""
    collector = Collector()
    async with aclosing(events):
        async for event in events:
            collector.add(event)
    return collector.result()


async def generate(engine: ChatEngine, prompts: Sequence[Prompt], options: SamplingOptions, **kwargs) -> Generation:
    """The whole answer: `generate_events` collected."""
    return await collect(generate_events(engine, prompts, options, **kwargs))


# -- the stream --------------------------------------------------------------------------------


async def generate_events(engine: ChatEngine, prompts: Sequence[Prompt], options: SamplingOptions, *, n: int = 1,
                          parser: Callable[[], OutputParser] = PlainParser, parallel_tool_calls: bool = True,
                          ) -> AsyncGenerator[Event, None]:
    """Events for `n` choices of each prompt; choice `p * n + j` is sample j of prompt p.

    `parser` makes one output parser per choice (tools, see `ChatPlan.parser`); with
    `parallel_tool_calls=False` only a choice's first call is kept.
    """
    jobs = [(p * n + j, prompt, for_choice(options, j)) for p, prompt in enumerate(prompts) for j in range(n)]
    prompt_tokens = completion_tokens = 0
    for index, prompt, opts in jobs:
        async with aclosing(engine.generate(prompt, opts)) as stream:
            first = await anext(stream)  # raises early errors before anything is sent
            yield ChoiceStarted(index)
            finish: Finish | None = None
            async with aclosing(_choice_events(index, first, stream, parser(), parallel_tool_calls)) as events:
                async for event in events:
                    if isinstance(event, Finish):
                        finish = event
                    else:
                        yield event
            assert finish is not None
            if index % n == 0:
                prompt_tokens += finish.prompt_tokens
            completion_tokens += finish.completion_tokens
    yield Finished(Usage(prompt_tokens, completion_tokens))


async def _choice_events(index: int, first: TokenEvent | Finish, stream: AsyncIterator[TokenEvent | Finish],
                         parser: OutputParser, parallel: bool) -> AsyncGenerator[Event | Finish, None]:
    calls = 0
    item: TokenEvent | Finish | None = first
    while item is not None:
        if isinstance(item, Finish):
            for event in _pieces(index, parser.finish(), calls, parallel):
                calls += isinstance(event, ToolCallDelta)
                yield event
            reason = "tool_calls" if calls and item.finish_reason == "stop" else item.finish_reason
            yield ChoiceFinished(index, reason, item.prompt_tokens, item.completion_tokens)
            yield item
            return
        entry = from_event(item)
        for event in _pieces(index, parser.feed(item.text, (entry,) if entry else ()), calls, parallel):
            calls += isinstance(event, ToolCallDelta)
            yield event
        item = await anext(stream, None)
    raise RuntimeError("the engine's stream ended without a Finish")


def _pieces(index: int, pieces: list[Piece], calls: int, parallel: bool) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        if isinstance(piece, Text):
            events.append(TextDelta(index, piece.text, piece.logprobs if piece.logprobs else None))
        elif isinstance(piece, Call) and (parallel or calls == 0):
            events.append(ToolCallDelta(index, calls, piece.call))
            calls += 1
    return events


async def shaped_stream(events: AsyncGenerator[Event, None], shape: Callable[[Event], list[T]],
                        on_finished: Callable[[Generation], Awaitable[object]] | None = None) -> AsyncGenerator[T, None]:
    """`events` turned into API chunks by `shape`; `on_finished` gets the whole answer (e.g. to store
    it) before the last chunks go out, so a client that saw the stream end can read it back."""
    collector = Collector()
    async with aclosing(events):
        async for event in events:
            collector.add(event)
            if isinstance(event, Finished) and on_finished is not None:
                await on_finished(collector.result())
            for chunk in shape(event):
                yield chunk
