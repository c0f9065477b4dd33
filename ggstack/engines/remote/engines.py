"""`ChatEngine` and `EmbeddingEngine` on a remote provider, so every inference route runs unchanged.

The generation layer renders a chat into a prompt and streams tokens from it. A remote server
renders chats with its own template, so `render_chat` here returns a `ChatPrompt`: a string
(the conversation as JSON, so two renderings compare equal exactly when they would send the
same request) that still carries the messages and tools, and `generate` sends it to
`/chat/completions`. A plain string or token ids go to `/completions`. Tool calls the remote
returns as structured `tool_calls` are written back as `<tool_call>` text, which the output
parser of the generation layer reads as it reads a local model's calls; ids are made anew.

Streams are always asked of the remote (a whole answer is the same events collected), and
each delta is passed on as soon as it arrives.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Self

from ggstack.core.errors import InvalidValueError, UnsupportedError
from ggstack.engines.base import Finish, FinishReason, SamplingOptions, TokenEvent
from ggstack.engines.remote.client import RemoteProvider
from ggstack.inference.tools import tool_call_text

DEFAULT_REMOTE_CONTEXT = 4096


class ChatPrompt(str):
    """A rendered chat for a remote model: JSON text, with the messages and tools it was made of."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None

    def __new__(cls, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> Self:
        text = json.dumps({"messages": messages, "tools": tools}, ensure_ascii=False, sort_keys=True)
        prompt = super().__new__(cls, text)
        prompt.messages, prompt.tools = messages, tools
        return prompt


class RemoteChatEngine:
    """A text-generation model served by a remote provider (implements `ChatEngine`)."""

    def __init__(self, identifier: str, provider: RemoteProvider, remote_model: str, *,
                 context_length: int | None) -> None:
        self.identifier = identifier
        self.provider = provider
        self.remote_model = remote_model
        self.context_length = context_length or DEFAULT_REMOTE_CONTEXT

    def render_chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                    add_generation_prompt: bool = True) -> str:
        return ChatPrompt([wire_message(m) for m in messages], tools or None)

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return await remote_tokens(self.provider, self.remote_model, text, add_bos)

    async def detokenize(self, tokens: list[int]) -> str:
        return await remote_text(self.provider, self.remote_model, tokens)

    def close(self) -> None:
        """Nothing is held per model (the provider owns the connections)."""

    async def generate(self, prompt: str | list[int], options: SamplingOptions) -> AsyncIterator[TokenEvent | Finish]:
        chat = isinstance(prompt, ChatPrompt)
        body: dict[str, Any] = {"model": self.remote_model, "stream": True,
                                "stream_options": {"include_usage": True},
                                **self.provider.flavour.sampling_fields(options, chat=chat)}
        constraint = self.provider.flavour.constraint_fields(options)
        if constraint is None:
            raise UnsupportedError(f"inference provider '{self.provider.provider_id}' "
                                   f"({self.provider.config.provider_type}) takes no grammars")
        body.update(constraint)
        if isinstance(prompt, ChatPrompt):
            body["messages"] = prompt.messages
            if prompt.tools:
                body["tools"] = prompt.tools
            path = "/chat/completions"
        else:
            body["prompt"] = prompt if isinstance(prompt, str) else list(prompt)
            path = "/completions"
        state = _StreamState()
        async for chunk in self.provider.stream(path, body, model=self.remote_model):
            for event in state.read(chunk, chat=chat):
                yield event
        for last in state.end():
            yield last


@dataclass
class _StreamState:
    """What a remote stream has said so far: tool-call fragments, the finish reason, usage."""

    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int | None = None
    pieces: int = 0
    calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def read(self, chunk: dict[str, Any], *, chat: bool) -> list[TokenEvent]:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
        events: list[TokenEvent] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # one choice is asked for; the generation layer makes n of them
            if chat:
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                for call in delta.get("tool_calls") or []:
                    self._add_call(call)
                events += _text_events(text, (choice.get("logprobs") or {}).get("content"))
            else:
                events += _completion_events(choice.get("text") or "", choice.get("logprobs"))
            if choice.get("finish_reason"):
                self.reason = choice["finish_reason"]
        self.pieces += len(events)
        return events

    def _add_call(self, call: dict[str, Any]) -> None:
        slot = self.calls.setdefault(int(call.get("index", len(self.calls))), {"name": "", "arguments": ""})
        function = call.get("function") or {}
        slot["name"] += function.get("name") or ""
        slot["arguments"] += function.get("arguments") or ""

    def end(self) -> list[TokenEvent | Finish]:
        """The calls the remote made, as `<tool_call>` text, then the `Finish`."""
        calls: list[TokenEvent | Finish] = [
            TokenEvent(text=tool_call_text(c["name"], c["arguments"] or "{}"), token_id=-1)
            for _, c in sorted(self.calls.items())]
        completion = self.completion_tokens if self.completion_tokens is not None else self.pieces + len(calls)
        return [*calls, Finish(_finish_reason(self.reason), self.prompt_tokens, completion)]


def _finish_reason(reason: str | None) -> FinishReason:
    # tool_calls is worked out again by the output parser from the calls written back as text
    return "length" if reason == "length" else "stop"


def _text_events(text: str, logprobs: list[dict[str, Any]] | None) -> list[TokenEvent]:
    """Chat logprobs come per token; when they spell the delta's text, one event per token."""
    if logprobs and "".join(str(e.get("token", "")) for e in logprobs) == text:
        return [TokenEvent(text=str(e.get("token", "")), token_id=-1, logprob=_float(e.get("logprob")),
                           top_logprobs=[(str(t.get("token", "")), _float(t.get("logprob")))
                                         for t in e.get("top_logprobs") or []])
                for e in logprobs]
    if logprobs:
        first = logprobs[0]
        return [TokenEvent(text=text, token_id=-1, logprob=_float(first.get("logprob")),
                           top_logprobs=[(str(t.get("token", "")), _float(t.get("logprob")))
                                         for t in first.get("top_logprobs") or []])]
    return [TokenEvent(text=text, token_id=-1)] if text else []


def _completion_events(text: str, logprobs: dict[str, Any] | None) -> list[TokenEvent]:
    """Completions logprobs are parallel lists (tokens, token_logprobs, top_logprobs as dicts)."""
    if not isinstance(logprobs, dict) or not logprobs.get("tokens"):
        return [TokenEvent(text=text, token_id=-1)] if text else []
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or [None] * len(tokens)
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    entries = [{"token": t, "logprob": v, "top_logprobs": [{"token": k, "logprob": p} for k, p in (top or {}).items()]}
               for t, v, top in zip(tokens, values, tops, strict=False)]
    return _text_events(text, entries)


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else -math.inf


def wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """A template message as OpenAI's API takes it: call arguments as JSON text, no name on tool turns."""
    out = {k: v for k, v in message.items() if not (message.get("role") == "tool" and k == "name")}
    if message.get("tool_calls"):
        out["tool_calls"] = [{**call, "function": {**call["function"], "arguments": _arguments_text(
            call["function"].get("arguments"))}} for call in message["tool_calls"]]
    return out


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments or {}, ensure_ascii=False)


class RemoteEmbeddingEngine:
    """An embedding model served by a remote provider (implements `EmbeddingEngine`)."""

    def __init__(self, identifier: str, provider: RemoteProvider, remote_model: str, *, dimension: int,
                 context_length: int | None) -> None:
        self.identifier = identifier
        self.provider = provider
        self.remote_model = remote_model
        self.dimension = dimension
        self.context_length = context_length or 512

    @classmethod
    async def open(cls, identifier: str, provider: RemoteProvider, remote_model: str, *,
                   dimension: int | None, context_length: int | None) -> RemoteEmbeddingEngine:
        """The engine; a dimension not configured nor listed is read from one embedding of a word."""
        engine = cls(identifier, provider, remote_model, dimension=dimension or 1, context_length=context_length)
        if dimension is None:
            vectors, _ = await engine.embed(["dimension"])
            engine.dimension = len(vectors[0])
        return engine

    async def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        if not inputs:
            return [], 0
        answer = await self.provider.post_json("/embeddings", {"model": self.remote_model, "input": list(inputs),
                                                               "encoding_format": "float"}, model=self.remote_model)
        rows = sorted(answer.get("data") or [], key=lambda row: row.get("index", 0))
        if len(rows) != len(inputs):
            raise InvalidValueError(f"inference provider '{self.provider.provider_id}' returned {len(rows)} "
                                    f"embeddings for {len(inputs)} inputs")
        vectors = [_normalised(row.get("embedding") or []) for row in rows]
        return vectors, int((answer.get("usage") or {}).get("prompt_tokens") or 0)

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return await remote_tokens(self.provider, self.remote_model, text, add_bos)

    def close(self) -> None:
        """Nothing is held per model (the provider owns the connections)."""


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


async def remote_tokens(provider: RemoteProvider, model: str, text: str, add_special: bool) -> list[int]:
    """Token ids from the remote's tokenizer (vLLM, llama-server).

    A server with no tokenizer endpoint (plain OpenAI-compatible, Ollama) gets UTF-8 bytes
    instead: callers only count tokens (chunk windows, context budgets), and a byte count is
    an upper bound on any BPE or SentencePiece tokenizer's count, so budgets stay safe.
    """
    kind = provider.flavour.tokenizer
    if kind == "vllm":
        answer = await provider.post_json("/tokenize", {"model": model, "prompt": text,
                                                        "add_special_tokens": add_special}, root=True)
        return list(answer.get("tokens") or [])
    if kind == "llama-server":
        answer = await provider.post_json("/tokenize", {"content": text, "add_special": add_special}, root=True)
        return [t if isinstance(t, int) else t.get("id") for t in answer.get("tokens") or []]
    return list(text.encode("utf-8"))


async def remote_text(provider: RemoteProvider, model: str, tokens: list[int]) -> str:
    kind = provider.flavour.tokenizer
    if kind == "vllm":
        answer = await provider.post_json("/detokenize", {"model": model, "tokens": tokens}, root=True)
        return str(answer.get("prompt", ""))
    if kind == "llama-server":
        answer = await provider.post_json("/detokenize", {"tokens": tokens}, root=True)
        return str(answer.get("content", ""))
    raise UnsupportedError(f"inference provider '{provider.provider_id}' ({provider.config.provider_type}) "
                           "cannot turn token ids back into text")
