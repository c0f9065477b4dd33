"""The legacy Llama Stack inference API on the shared generation layer: its requests in, its shapes out.

In: `sampling_params` strategies, InterleavedContent, the message family, `ToolDefinition`s
and `tool_config` become `SamplingOptions`, `Message`s, `ToolSpec`s and a `ToolChoice`.
Out: finish reasons become stop reasons (a tool call ends a message, not the turn), token
logprobs become `TokenLogProbs` tables, usage becomes `metrics` (as Llama Stack's router adds
them), and generation events become start / progress / complete stream chunks.

Dell's `/llamastack/...` route speaks an older dialect of the same family; `dell.py` reuses
the request half of this module.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import MAX_TOP_LOGPROBS, ChatEngine, SamplingOptions
from ggstack.inference.generation import (
    ChoiceFinished,
    ChoiceStarted,
    Event,
    Generation,
    TextDelta,
    ToolCallDelta,
    generate_events,
)
from ggstack.inference.logprobs import TokenLogprob, logprobs_by_token
from ggstack.inference.messages import Message, text_content
from ggstack.inference.options import MAX_TEMPERATURE, sampling_options
from ggstack.inference.prompt import plan_chat
from ggstack.inference.tools import (
    ToolCall,
    ToolChoice,
    ToolSpec,
    check_tool_choice,
    new_call_id,
    unique_names,
)

STOP_REASONS = {"stop": "end_of_turn", "length": "out_of_tokens", "tool_calls": "end_of_message"}


def stop_reason(finish_reason: str) -> str:
    return STOP_REASONS[finish_reason]


# -- sampling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """A `sampling_params` object in plain values.

    The current API nests the strategy's own fields in `strategy`; Dell's older one has them
    flat beside a strategy name. `strategy_param` is where they sit, for error messages.
    None means "not given" (llama.cpp's default then applies).
    """

    strategy: str = "greedy"
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    repetition_penalty: float | None = None
    stop: tuple[str, ...] = ()
    strategy_param: str = "sampling_params.strategy"

    @classmethod
    def from_legacy(cls, params: Mapping[str, Any] | None) -> Sampling:
        """From a dumped `SamplingParams`; absent, it is greedy with no token limit (Llama Stack's default)."""
        if not params:
            return cls()
        strategy = params.get("strategy") or {"type": "greedy"}
        return cls(strategy=strategy["type"], temperature=strategy.get("temperature"),
                   top_p=strategy.get("top_p"), top_k=strategy.get("top_k"), max_tokens=params.get("max_tokens"),
                   repetition_penalty=params.get("repetition_penalty"), stop=tuple(params.get("stop") or ()))

    def options(self, *, logprobs: int | None = None, json_schema: dict[str, Any] | None = None,
                grammar: str | None = None) -> SamplingOptions:
        """The engine's options. Each strategy does only what it names: `greedy` is temperature 0,
        `top_p` is pure nucleus sampling (no top-k or min-p cut), `top_k` pure top-k."""
        self._check()
        given: dict[str, Any] = {}
        if self.strategy == "greedy":
            given["temperature"] = 0.0
        elif self.strategy == "top_p":
            given.update(temperature=self.temperature, top_p=self.top_p, top_k=0, min_p=0.0)
        elif self.strategy == "top_k":
            given.update(temperature=self.temperature, top_k=self.top_k, top_p=1.0, min_p=0.0)
        else:
            raise InvalidValueError(f"sampling strategy {self.strategy!r} is not one of greedy, top_p, top_k",
                                    field=self.strategy_param)
        if self.repetition_penalty is not None and self.repetition_penalty != 1.0:
            given["repeat_penalty"] = self.repetition_penalty
        return sampling_options(max_tokens=self.max_tokens or None, stop=list(self.stop), logprobs=logprobs,
                                json_schema=json_schema, grammar=grammar, **given)

    def _check(self) -> None:
        where = self.strategy_param
        checks = [
            (self.max_tokens is None or self.max_tokens >= 0, "sampling_params.max_tokens",
             "must not be negative (0 means no limit)"),
            (self.repetition_penalty is None or self.repetition_penalty > 0, "sampling_params.repetition_penalty",
             "must be positive (1.0 means no penalty)"),
            (self.strategy == "greedy" or self.temperature is None or 0 <= self.temperature <= MAX_TEMPERATURE,
             f"{where}.temperature", f"must be between 0 and {MAX_TEMPERATURE:g}"),
            (self.strategy != "top_p" or self.top_p is None or 0 < self.top_p <= 1, f"{where}.top_p",
             "must be more than 0 and at most 1"),
            (self.strategy != "top_k" or (self.top_k or 0) >= 1, f"{where}.top_k",
             "must be at least 1 with the top_k strategy"),
        ]
        for ok, param, message in checks:
            if not ok:
                raise InvalidValueError(f"{param} {message}", field=param)


def logprobs_count(config: Mapping[str, Any] | None) -> int | None:
    """`logprobs.top_k` alternatives per token (0: the chosen token only); None when not asked for."""
    if config is None:
        return None
    top_k = config.get("top_k") or 0
    if not 0 <= top_k <= MAX_TOP_LOGPROBS:
        raise InvalidValueError(f"logprobs.top_k must be between 0 and {MAX_TOP_LOGPROBS}", field="logprobs.top_k")
    return top_k


# -- structured output -------------------------------------------------------------------------

#: Keys under which `bnf` may hold a whole grammar as text rather than a table of rules.
GRAMMAR_KEYS = ("gbnf", "grammar", "bnf")


def response_format(fmt: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """`response_format` -> (JSON schema, GBNF grammar); at most one is set, and both are enforced."""
    if not fmt:
        return None, None
    if fmt["type"] == "json_schema":
        return dict(fmt["json_schema"]), None
    return None, bnf_grammar(fmt["bnf"])


def bnf_grammar(bnf: Mapping[str, Any]) -> str:
    """The spec types `bnf` as an object without saying more. Two readings are accepted: the whole
    GBNF text under one of `GRAMMAR_KEYS`, or a table of rule name -> right-hand side with a `root`."""
    if len(bnf) == 1 and next(iter(bnf)) in GRAMMAR_KEYS and isinstance(next(iter(bnf.values())), str):
        return next(iter(bnf.values()))
    if "root" in bnf and all(isinstance(v, str) for v in bnf.values()):
        rules = sorted(bnf.items(), key=lambda rule: rule[0] != "root")
        return "\n".join(f"{name} ::= {rhs}" for name, rhs in rules)
    raise InvalidValueError("response_format.bnf must hold a GBNF grammar as {'gbnf': '<text>'} or rules as "
                            "{'root': '<rhs>', '<name>': '<rhs>', ...}", field="response_format.bnf")


# -- messages ----------------------------------------------------------------------------------


def content_text(content: Any, *, param: str) -> str:
    """InterleavedContent (a string, one item, or a list of items) as text; images are refused."""
    return text_content([content] if isinstance(content, Mapping) else content, param=param)


def legacy_messages(messages: Sequence[Mapping[str, Any]],
                    content: Callable[..., str] = content_text) -> list[Message]:
    """The message family -> `Message`s. System messages are concatenated into one leading system
    turn (as the spec says); a user message's RAG `context` follows its content after a blank line."""
    if not messages:
        raise InvalidValueError("messages must not be empty", field="messages")
    system: list[str] = []
    turns: list[Message] = []
    for i, raw in enumerate(messages):
        param = f"messages[{i}]"
        text = content(raw.get("content"), param=f"{param}.content")
        role = raw["role"]
        if role == "system":
            system.append(text)
        elif role == "user":
            if raw.get("context") is not None:
                text = f"{text}\n\n{content(raw['context'], param=f'{param}.context')}"
            turns.append(Message("user", text))
        elif role in ("tool", "ipython"):
            turns.append(Message("tool", text, name=raw.get("tool_name"), tool_call_id=raw.get("call_id") or ""))
        elif role == "assistant":
            calls = tuple(legacy_call(c) for c in raw.get("tool_calls") or ())
            turns.append(Message("assistant", text, tool_calls=calls))
        else:
            raise InvalidValueError(f"{param}.role {role!r} is not a chat role", field=f"{param}.role")
    return [Message("system", "\n".join(system)), *turns] if system else turns


def chat_events(engine: ChatEngine, request: Mapping[str, Any], *, tools: Sequence[ToolSpec] = (),
                tool_choice: ToolChoice | None = None,
                read_sampling: Callable[[Mapping[str, Any] | None], Sampling] = Sampling.from_legacy,
                read_messages: Callable[[list[Mapping[str, Any]]], list[Message]] = legacy_messages,
                ) -> AsyncGenerator[Event, None]:
    """The one chat path of the legacy shape: Llama Stack's `chat-completion` and Dell's Llama Stack
    chat, which reads its own `sampling_params` and messages (`read_sampling`, `read_messages`).

    `request` is the dumped body (JSON mode, without None); its fields are read in the order
    the handlers always read them, so the first error named stays the same.
    """
    json_schema, grammar = response_format(request.get("response_format"))
    sampling = read_sampling(request.get("sampling_params")).options(
        logprobs=logprobs_count(request.get("logprobs")), json_schema=json_schema, grammar=grammar)
    plan = plan_chat(engine, read_messages(request["messages"]), sampling, tools=tools, tool_choice=tool_choice)
    return generate_events(engine, [plan.prompt], plan.options, parser=plan.parser,
                           parallel_tool_calls=plan.parallel_tool_calls)


def legacy_call(call: Mapping[str, Any]) -> ToolCall:
    """An earlier `ToolCall` (arguments as an object or as JSON text) in the neutral form."""
    arguments = call.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
    return ToolCall(id=call.get("call_id") or new_call_id(), name=call["tool_name"], arguments=arguments)


# -- tools -------------------------------------------------------------------------------------

#: `ToolParamDefinition.param_type` (Python or JSON Schema spellings) -> JSON Schema type.
PARAM_TYPES = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
               "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
               "dict": "object", "object": "object"}
#: The arguments Llama Stack's built-in tools take when a definition gives none.
BUILTIN_PARAMETERS = {
    "brave_search": {"query": {"param_type": "string", "description": "The search query"}},
    "wolfram_alpha": {"query": {"param_type": "string", "description": "The query to compute"}},
    "photogen": {"query": {"param_type": "string", "description": "What the image should show"}},
    "code_interpreter": {"code": {"param_type": "string", "description": "The Python code to run"}},
}


def legacy_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[ToolSpec]:
    """`ToolDefinition`s -> `ToolSpec`s with a JSON schema of their parameters; names must be unique."""
    specs: list[ToolSpec] = []
    for tool in tools or ():
        name = tool["tool_name"]
        parameters = tool.get("parameters")
        if parameters is None:
            parameters = BUILTIN_PARAMETERS.get(name, {})
        specs.append(ToolSpec(name=name, description=tool.get("description") or "",
                              parameters=parameters_schema(parameters)))
    return unique_names(specs)


def parameters_schema(parameters: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`{name: ToolParamDefinition}` -> a JSON schema object. An unknown `param_type` (`list[str]`
    is read as `list`) leaves the value's type open rather than failing the request."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, definition in parameters.items():
        prop: dict[str, Any] = {}
        kind = PARAM_TYPES.get(str(definition.get("param_type", "")).lower().split("[")[0].strip())
        if kind:
            prop["type"] = kind
        if definition.get("description"):
            prop["description"] = definition["description"]
        if definition.get("default") is not None:
            prop["default"] = definition["default"]
        properties[name] = prop
        if definition.get("required", True):
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def legacy_tool_choice(config_choice: str | None, deprecated_choice: str | None,
                       tools: Sequence[ToolSpec]) -> ToolChoice:
    """`tool_config.tool_choice` (or the deprecated top-level `tool_choice`; both must agree when
    both are given): auto, required, none or a tool's name. Default: auto with tools, else none."""
    if config_choice is not None and deprecated_choice is not None and config_choice != deprecated_choice:
        raise InvalidValueError("tool_choice and tool_config.tool_choice must match", field="tool_choice")
    value = config_choice or deprecated_choice or "auto"
    param = "tool_config.tool_choice" if config_choice is not None else "tool_choice"
    if value == "auto" and not tools:
        return ToolChoice("none")
    choice = ToolChoice.of(value)
    check_tool_choice(choice, tools, param=param)
    return choice


# -- answers -----------------------------------------------------------------------------------


def tool_call(call: ToolCall) -> dict[str, Any]:
    """A `ToolCall`: arguments as an object when the spec's value types can hold them, else as JSON
    text; `arguments_json` is always the exact text."""
    arguments = call.arguments_object()
    return {"call_id": call.id, "tool_name": call.name,
            "arguments": arguments if _fits_arguments(arguments) else call.arguments,
            "arguments_json": call.arguments}


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _fits_arguments(arguments: dict[str, Any]) -> bool:
    """ToolCall.arguments allows scalars, lists of scalars and objects of scalars, nothing deeper."""
    for value in arguments.values():
        if isinstance(value, list):
            ok = all(_is_scalar(v) for v in value)
        elif isinstance(value, dict):
            ok = all(_is_scalar(v) for v in value.values())
        else:
            ok = _is_scalar(value)
        if not ok:
            return False
    return True


def token_logprobs(entries: Iterable[TokenLogprob]) -> list[dict[str, Any]]:
    return [{"logprobs_by_token": logprobs_by_token(e)} for e in entries]


def metrics(prompt_tokens: int, completion_tokens: int) -> list[dict[str, Any]]:
    """The token counts Llama Stack's router reports as `metrics`."""
    return [{"metric": "prompt_tokens", "value": prompt_tokens},
            {"metric": "completion_tokens", "value": completion_tokens},
            {"metric": "total_tokens", "value": prompt_tokens + completion_tokens}]


def chat_response(generation: Generation, *, logprobs: bool) -> dict[str, Any]:
    """A `ChatCompletionResponse` (one choice: the legacy API has no `n`)."""
    choice = generation.choices[0]
    message = {"role": "assistant", "content": choice.text, "stop_reason": stop_reason(choice.finish_reason),
               "tool_calls": [tool_call(c) for c in choice.tool_calls]}
    body: dict[str, Any] = {"metrics": metrics(generation.usage.prompt_tokens, generation.usage.completion_tokens),
                            "completion_message": message}
    if logprobs:
        body["logprobs"] = token_logprobs(choice.logprobs or ())
    return body


class LegacyChatChunks:
    """Events -> `ChatCompletionResponseStreamChunk`s: `start` with empty text, `progress` with text or
    a parsed tool call, `complete` with the stop reason and the token metrics."""

    def __init__(self, *, logprobs: bool) -> None:
        self._logprobs = logprobs

    @staticmethod
    def _chunk(event_type: str, delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chunk_metrics = extra.pop("metrics", None)
        event = {"event_type": event_type, "delta": delta, **{k: v for k, v in extra.items() if v is not None}}
        return {"metrics": chunk_metrics, "event": event} if chunk_metrics else {"event": event}

    def chunks(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, ChoiceStarted):
            return [self._chunk("start", {"type": "text", "text": ""})]
        if isinstance(event, TextDelta):
            entries = token_logprobs(event.logprobs) if self._logprobs and event.logprobs else None
            return [self._chunk("progress", {"type": "text", "text": event.text}, logprobs=entries)]
        if isinstance(event, ToolCallDelta):
            delta = {"type": "tool_call", "tool_call": tool_call(event.call), "parse_status": "succeeded"}
            return [self._chunk("progress", delta)]
        if isinstance(event, ChoiceFinished):
            return [self._chunk("complete", {"type": "text", "text": ""},
                                stop_reason=stop_reason(event.finish_reason),
                                metrics=metrics(event.prompt_tokens, event.completion_tokens))]
        return []


def completion_response(generation: Generation, *, logprobs: bool) -> dict[str, Any]:
    """A `CompletionResponse`."""
    choice = generation.choices[0]
    body: dict[str, Any] = {"metrics": metrics(generation.usage.prompt_tokens, generation.usage.completion_tokens),
                            "content": choice.text, "stop_reason": stop_reason(choice.finish_reason)}
    if logprobs:
        body["logprobs"] = token_logprobs(choice.logprobs or ())
    return body


class LegacyCompletionChunks:
    """Events -> `CompletionResponseStreamChunk`s; the last has an empty delta, the stop reason and metrics."""

    def __init__(self, *, logprobs: bool) -> None:
        self._logprobs = logprobs

    def chunks(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, TextDelta):
            chunk: dict[str, Any] = {"delta": event.text}
            if self._logprobs and event.logprobs:
                chunk["logprobs"] = token_logprobs(event.logprobs)
            return [chunk]
        if isinstance(event, ChoiceFinished):
            return [{"metrics": metrics(event.prompt_tokens, event.completion_tokens), "delta": "",
                     "stop_reason": stop_reason(event.finish_reason)}]
        return []
