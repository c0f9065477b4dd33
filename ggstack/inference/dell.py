"""Dell Pro AI Studio's two chat shapes on the shared generation layer.

`/openai/chat/completions` follows OpenAI's schemas as Dell publishes them: the shared OpenAI
shaping, plus the keys Dell's schemas require even when they are null (`message.refusal`,
`choice.logprobs`, `logprobs.refusal`). Its request has no `tools`, `response_format`, `n`
or `seed`, so none of those reach the handler.

`/llamastack/inference/chat-completion` is the Llama Stack request family from before the
current one: a flat `sampling_params` with a strategy name (whose defaults, temperature 0
included, are the spec's), content as strings or `ImageMedia`, string deltas in the stream,
no tools and no metrics. Its requests map through `legacy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.inference.generation import ChoiceFinished, ChoiceStarted, Event, Generation, TextDelta
from ggstack.inference.legacy import Sampling, legacy_messages, stop_reason, token_logprobs
from ggstack.inference.messages import Message

# -- /llamastack/inference/chat-completion ------------------------------------------------------


def content_text(content: Any, *, param: str) -> str:
    """`str | ImageMedia | list[str | ImageMedia]` as text (strings joined by newlines); images are refused."""
    items = content if isinstance(content, list) else [content]
    for j, item in enumerate(items):
        if not isinstance(item, str):
            where = param if not isinstance(content, list) else f"{param}[{j}]"
            raise InvalidValueError(f"{where} is an image; the local models read text only", field=where)
    return "\n".join(items)


def dell_messages(messages: list[Mapping[str, Any]]) -> list[Message]:
    return legacy_messages(messages, content=content_text)


def dell_sampling(params: Mapping[str, Any] | None) -> Sampling:
    """From a dumped Dell `SamplingParams` (defaults filled in); absent, it is greedy with no limit."""
    if not params:
        return Sampling(strategy_param="sampling_params")
    return Sampling(strategy=params["strategy"], temperature=params.get("temperature"), top_p=params.get("top_p"),
                    top_k=params.get("top_k"), max_tokens=params.get("max_tokens"),
                    repetition_penalty=params.get("repetition_penalty"), strategy_param="sampling_params")


def chat_response(generation: Generation, *, logprobs: bool) -> dict[str, Any]:
    """Dell's `ChatCompletionResponse`: `tool_calls` is required, and empty (the request offers no tools)."""
    choice = generation.choices[0]
    body: dict[str, Any] = {"completion_message": {"role": "assistant", "content": choice.text,
                                                   "stop_reason": stop_reason(choice.finish_reason),
                                                   "tool_calls": []}}
    if logprobs:
        body["logprobs"] = token_logprobs(choice.logprobs or ())
    return body


class DellChatChunks:
    """Events -> Dell's `ChatCompletionResponseStreamChunk`s, whose delta is a plain string."""

    def __init__(self, *, logprobs: bool) -> None:
        self._logprobs = logprobs

    def chunks(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, ChoiceStarted):
            return [{"event": {"event_type": "start", "delta": ""}}]
        if isinstance(event, TextDelta):
            body: dict[str, Any] = {"event_type": "progress", "delta": event.text}
            if self._logprobs and event.logprobs:
                body["logprobs"] = token_logprobs(event.logprobs)
            return [{"event": body}]
        if isinstance(event, ChoiceFinished):
            return [{"event": {"event_type": "complete", "delta": "",
                               "stop_reason": stop_reason(event.finish_reason)}}]
        return []


# -- /openai/chat/completions ------------------------------------------------------------------


def _with_logprobs_refusal(choice: dict[str, Any]) -> None:
    if choice.get("logprobs") is not None:
        choice["logprobs"] = {**choice["logprobs"], "refusal": None}


def openai_body(body: dict[str, Any], *, service_tier: str | None = None) -> dict[str, Any]:
    """A shared-layer chat completion as Dell's `CreateChatCompletionResponse`."""
    for choice in body["choices"]:
        choice["message"].setdefault("refusal", None)
        choice.setdefault("logprobs", None)
        _with_logprobs_refusal(choice)
    if service_tier is not None:
        body["service_tier"] = service_tier
    return body


def openai_chunk(chunk: dict[str, Any], *, service_tier: str | None = None) -> dict[str, Any]:
    """A shared-layer chunk as Dell's `CreateChatCompletionStreamResponse`."""
    for choice in chunk["choices"]:
        _with_logprobs_refusal(choice)
    if service_tier is not None:
        chunk["service_tier"] = service_tier
    return chunk
