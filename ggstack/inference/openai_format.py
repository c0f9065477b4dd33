"""Generations as OpenAI chat-completion and completion bodies and stream chunks (plain dicts).

Two specs serve this shape. Llama Stack 0.2.23's schemas have no `usage` and no nulls (its
unfinished stream choices still need a string `finish_reason`); Dell's follow OpenAI's own
schemas, with both. A `Dialect` says which; the handlers derive theirs from the generated
models, so the answers follow the spec when an overlay changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel

from ggstack.inference.generation import (
    Choice,
    ChoiceFinished,
    ChoiceStarted,
    Event,
    Finished,
    Generation,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ggstack.inference.logprobs import openai_logprobs
from ggstack.inference.tools import ToolCall


@dataclass(frozen=True)
class Dialect:
    """What the serving spec allows beyond the common core.

    usage: bodies (and, with `stream_options.include_usage`, a last stream chunk) carry `usage`.
    nulls: OpenAI's explicit nulls (`finish_reason: null` while streaming, `content: null` next
    to tool calls); without them unfinished choices say `finish_reason: ""` and null keys are left out.
    """

    usage: bool = True
    nulls: bool = True

    @property
    def unfinished(self) -> str | None:
        return None if self.nulls else ""


OPENAI = Dialect()


def _set(body: dict[str, Any], key: str, value: Any, dialect: Dialect) -> None:
    if value is not None or dialect.nulls:
        body[key] = value


def tool_call(call: ToolCall, position: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": call.id, "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}}
    if position is not None:
        body = {"index": position, **body}
    return body


# -- chat --------------------------------------------------------------------------------------


def chat_message(choice: Choice, dialect: Dialect = OPENAI) -> dict[str, Any]:
    """The assistant message; with tool calls and no other text, content is null (or absent)."""
    message: dict[str, Any] = {"role": "assistant"}
    content = choice.text if choice.text.strip() or not choice.tool_calls else None
    _set(message, "content", content, dialect)
    if choice.tool_calls:
        message["tool_calls"] = [tool_call(c) for c in choice.tool_calls]
    return message


def chat_completion(generation: Generation, *, id: str, created: int, model: str, logprobs: bool,
                    dialect: Dialect = OPENAI) -> dict[str, Any]:
    """An `OpenAIChatCompletion` body."""
    choices = [_with_logprobs({"index": choice.index, "message": chat_message(choice, dialect),
                               "finish_reason": choice.finish_reason}, choice, logprobs)
               for choice in generation.choices]
    return _whole_answer("chat.completion", generation, choices, id=id, created=created, model=model,
                         dialect=dialect)


def _with_logprobs(body: dict[str, Any], choice: Choice, logprobs: bool) -> dict[str, Any]:
    if logprobs:
        body["logprobs"] = openai_logprobs(choice.logprobs or ())
    return body


def _whole_answer(kind: str, generation: Generation, choices: list[dict[str, Any]], *, id: str, created: int,
                  model: str, dialect: Dialect) -> dict[str, Any]:
    """The envelope a whole (not streamed) chat or text completion shares."""
    result: dict[str, Any] = {"id": id, "object": kind, "created": created, "model": model, "choices": choices}
    if dialect.usage:
        result["usage"] = generation.usage.as_dict()
    return result


class OpenAIChatChunks:
    """Turns events into `OpenAIChatCompletionChunk` dicts, one stream's worth."""

    def __init__(self, *, id: str, created: int, model: str, logprobs: bool, include_usage: bool = False,
                 dialect: Dialect = OPENAI) -> None:
        self._head = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._logprobs = logprobs
        self._dialect = dialect
        self._usage = include_usage and dialect.usage

    def _chunk(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> dict[str, Any]:
        chunk = {**self._head, "choices": choices}
        if self._usage and (usage is not None or self._dialect.nulls):
            chunk["usage"] = usage.as_dict() if usage is not None else None
        return chunk

    def _choice(self, index: int, delta: dict[str, Any], finish_reason: str | None = None,
                logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"index": index, "delta": delta}
        _set(body, "finish_reason", finish_reason if finish_reason is not None else self._dialect.unfinished,
             self._dialect)
        if logprobs is not None:
            body["logprobs"] = logprobs
        return body

    def chunks(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, ChoiceStarted):
            return [self._chunk([self._choice(event.index, {"role": "assistant", "content": ""})])]
        if isinstance(event, TextDelta):
            logprobs = openai_logprobs(event.logprobs or ()) if self._logprobs and event.logprobs else None
            return [self._chunk([self._choice(event.index, {"content": event.text}, logprobs=logprobs)])]
        if isinstance(event, ToolCallDelta):
            delta = {"tool_calls": [tool_call(event.call, event.position)]}
            return [self._chunk([self._choice(event.index, delta)])]
        if isinstance(event, ChoiceFinished):
            return [self._chunk([self._choice(event.index, {}, event.finish_reason)])]
        if isinstance(event, Finished) and self._usage:
            return [self._chunk([], event.usage)]
        return []


# -- completions -------------------------------------------------------------------------------


def completion(generation: Generation, *, id: str, created: int, model: str, logprobs: bool,
               echo: list[str] | None = None, n: int = 1, dialect: Dialect = OPENAI) -> dict[str, Any]:
    """An `OpenAICompletion` body; `echo[p]` is put in front of each choice of prompt p."""
    choices = [_with_logprobs({"index": choice.index, "text": (echo[choice.index // n] if echo else "") + choice.text,
                               "finish_reason": choice.finish_reason}, choice, logprobs)
               for choice in generation.choices]
    return _whole_answer("text_completion", generation, choices, id=id, created=created, model=model,
                         dialect=dialect)


class OpenAICompletionChunks:
    """Turns events into streamed `OpenAICompletion` dicts (the completions API streams that object)."""

    def __init__(self, *, id: str, created: int, model: str, logprobs: bool, echo: list[str] | None = None,
                 n: int = 1, include_usage: bool = False, dialect: Dialect = OPENAI) -> None:
        self._head = {"id": id, "object": "text_completion", "created": created, "model": model}
        self._logprobs = logprobs
        self._echo = echo
        self._n = n
        self._dialect = dialect
        self._usage = include_usage and dialect.usage

    def _chunk(self, index: int, text: str, finish_reason: str | None = None,
               logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "text": text}
        _set(choice, "finish_reason", finish_reason if finish_reason is not None else self._dialect.unfinished,
             self._dialect)
        if logprobs is not None:
            choice["logprobs"] = logprobs
        # no `usage: null` on the other chunks: the stable completion schema has usage as an object only
        return {**self._head, "choices": [choice]}

    def chunks(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, ChoiceStarted) and self._echo and self._echo[event.index // self._n]:
            return [self._chunk(event.index, self._echo[event.index // self._n])]
        if isinstance(event, TextDelta):
            logprobs = openai_logprobs(event.logprobs or ()) if self._logprobs and event.logprobs else None
            return [self._chunk(event.index, event.text, logprobs=logprobs)]
        if isinstance(event, ChoiceFinished):
            return [self._chunk(event.index, "", event.finish_reason)]
        if isinstance(event, Finished) and self._usage:
            return [{**self._head, "choices": [], "usage": event.usage.as_dict()}]
        return []


# -- which dialect a spec speaks ---------------------------------------------------------------


def spec_dialect(body_model: type[BaseModel], choice_model: type[BaseModel]) -> Dialect:
    """The dialect of a generated body model (has `usage`?) and its stream choice (nullable finish_reason?)."""
    finish = choice_model.model_fields["finish_reason"].annotation
    return Dialect(usage="usage" in body_model.model_fields, nulls=type(None) in get_args(finish))
