"""What a candidate answers for one eval row: the `generated_answer` column scoring reads.

A row asks through `chat_completion_input` (its messages, as JSON text or a list) or
`completion_input` (a prompt); a model candidate answers with its `sampling_params` and
`system_message`, as the reference server does (user and system messages only; no tools).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.inference.generation import generate
from ggstack.inference.legacy import Sampling, content_text

Row = Mapping[str, Any]
#: Answers one row: `{"generated_answer": ...}` (and maybe more columns, e.g. an agent's `context`).
Answer = Callable[[Row], Awaitable[dict[str, Any]]]


def row_input(row: Row, name: str) -> Any:
    value = row[name]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            if name == "completion_input":
                return value
            raise InvalidValueError(f"column '{name}' is not JSON", field=name) from None
    return value


def chat_messages(row: Row) -> list[dict[str, Any]]:
    """The row's system and user messages (in that order), as the reference server reads them."""
    messages = row_input(row, "chat_completion_input")
    if isinstance(messages, Mapping):
        messages = [messages]
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise InvalidValueError("column 'chat_completion_input' must be a list of messages",
                                field="chat_completion_input")
    system = [m for m in messages if m.get("role") == "system"]
    user = [m for m in messages if m.get("role") == "user"]
    if not user:
        raise InvalidValueError("column 'chat_completion_input' has no user message", field="chat_completion_input")
    return [*system, *user]


def chat_turns(row: Row, system_message: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Template turns: the candidate's system message and the row's joined into one system turn
    (chat templates take one), then the row's user turns."""
    messages = ([system_message] if system_message else []) + chat_messages(row)
    texts = [(m["role"], content_text(m.get("content"), param="chat_completion_input")) for m in messages]
    system = "\n\n".join(text for role, text in texts if role == "system")
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": role, "content": text} for role, text in texts if role == "user"]


def sampling_of(candidate: Mapping[str, Any]) -> Sampling:
    sampling = Sampling.from_legacy(candidate.get("sampling_params"))
    if not sampling.max_tokens:
        # An eval generates once per row, in the background: an answer must have an end.
        raise InvalidValueError("sampling_params.max_tokens must be given (and above 0) to evaluate",
                                field="sampling_params.max_tokens")
    return sampling


def model_answer(models: Any, candidate: Mapping[str, Any]) -> Answer:
    """Answers from `candidate["model"]`, checked now so a bad config fails before any row runs."""
    options = sampling_of(candidate).options()
    system = candidate.get("system_message")

    async def answer(row: Row) -> dict[str, Any]:
        engine = await models.chat(candidate["model"])
        if "chat_completion_input" in row:
            prompt = engine.render_chat(chat_turns(row, system))
        elif "completion_input" in row:
            prompt = str(row_input(row, "completion_input"))
        else:
            raise InvalidValueError("a row needs a chat_completion_input or completion_input column",
                                    field="input_rows")
        return {"generated_answer": (await generate(engine, [prompt], options)).choices[0].text}

    return answer
