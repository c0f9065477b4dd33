"""Dataset rows to training windows: each row becomes a chat, rendered by the model's own
template and tokenized by the model's vocabulary, and the token streams are packed end to end.

Packing is the only layout: llama.cpp's trainer takes fixed windows of `n_ctx` tokens and puts
a label on every position, so padding short rows would train the model on padding. A stream
shorter than one window, or a last partial window, is completed by wrapping round to the start.

Answer tokens (for `train_on_input: false`): the template renders the chat up to each assistant
message with the generation prompt, and through that message without it; what the second adds
to the first is the answer (its text and the template's end-of-turn). The chat is tokenized
piece by piece along those cuts, so every token is wholly prompt or wholly answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import ChatEngine

DataFormat = Literal["instruct", "dialog"]
#: The reference's instruct columns, then the plain names the issue calls them by.
INPUT_COLUMNS = ("input_query", "input")
OUTPUT_COLUMNS = ("expected_answer", "output")
DIALOG_COLUMNS = ("dialog", "messages")
ROLES = ("system", "user", "assistant")
T = TypeVar("T")


def row_messages(row: dict[str, Any], data_format: DataFormat, index: int) -> list[dict[str, str]]:
    """The chat one row stands for; a row that lacks its columns is refused naming the row."""
    if data_format == "instruct":
        question = _column(row, INPUT_COLUMNS, index)
        answer = _column(row, OUTPUT_COLUMNS, index)
        return [{"role": "user", "content": _text(question, index)},
                {"role": "assistant", "content": _text(answer, index)}]
    dialog = _column(row, DIALOG_COLUMNS, index)
    if isinstance(dialog, str):
        try:
            dialog = json.loads(dialog)
        except ValueError:
            raise InvalidValueError(f"dataset row {index}: the dialog column is not a JSON list of messages",
                                    field="training_config.data_config.dataset_id") from None
    if not isinstance(dialog, list) or not dialog:
        raise InvalidValueError(f"dataset row {index}: the dialog column must be a list of messages",
                                field="training_config.data_config.dataset_id")
    return [_message(message, index) for message in dialog]


def _column(row: dict[str, Any], names: Sequence[str], index: int) -> Any:
    for name in names:
        if row.get(name) is not None:
            return row[name]
    raise InvalidValueError(f"dataset row {index} has none of the columns {', '.join(names)}",
                            field="training_config.data_config.dataset_id")


def _message(message: Any, index: int) -> dict[str, str]:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise InvalidValueError(f"dataset row {index}: every dialog message needs a role of "
                                f"{', '.join(ROLES)}", field="training_config.data_config.dataset_id")
    return {"role": message["role"], "content": _text(message.get("content"), index)}


def _text(content: Any, index: int) -> str:
    """A string, or the text parts of a content list (images cannot be trained on here)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise InvalidValueError(f"dataset row {index}: message content must be text",
                            field="training_config.data_config.dataset_id")


async def tokenize_rows(engine: ChatEngine, rows: Sequence[dict[str, Any]], data_format: DataFormat) -> list[int]:
    """Every row's chat, rendered without a generation prompt, as one token stream."""
    stream: list[int] = []
    for index, row in enumerate(rows):
        text = engine.render_chat(row_messages(row, data_format, index), add_generation_prompt=False)
        stream += await engine.tokenize(text, add_bos=False, special=True)
    return stream


async def tokenize_answers(engine: ChatEngine, rows: Sequence[dict[str, Any]],
                           data_format: DataFormat) -> tuple[list[int], list[bool]]:
    """Every row's chat as one token stream, and for each token whether it is part of an answer."""
    stream: list[int] = []
    answer: list[bool] = []
    for index, row in enumerate(rows):
        for text, is_answer in answer_pieces(engine, row_messages(row, data_format, index), index):
            tokens = await engine.tokenize(text, add_bos=False, special=True) if text else []
            stream += tokens
            answer += [is_answer] * len(tokens)
    return stream, answer


def answer_pieces(engine: ChatEngine, messages: list[dict[str, str]], index: int) -> list[tuple[str, bool]]:
    """The rendered chat cut into (text, is_answer) pieces, in order; they join to the whole chat."""
    whole = engine.render_chat(messages, add_generation_prompt=False)
    pieces: list[tuple[str, bool]] = []
    done = 0
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        through = engine.render_chat(messages[:turn + 1], add_generation_prompt=False)
        prompt = (engine.render_chat(messages[:turn], add_generation_prompt=True) if turn
                  else _opening(engine, message, through))
        if not (whole.startswith(through) and through.startswith(prompt) and done <= len(prompt)):
            raise InvalidValueError(
                f"dataset row {index}: the model's chat template does not render this chat turn by turn "
                "(an earlier turn's text changes when a later one is added), so its answer tokens cannot be "
                "told apart; send train_on_input true to train on every token",
                field="training_config.data_config.train_on_input")
        pieces += [(whole[done:len(prompt)], False), (through[len(prompt):], True)]
        done = len(through)
    return [*pieces, (whole[done:], False)]


def pack(stream: Sequence[T], window: int) -> list[list[T]]:
    """Windows of `window + 1` tokens (inputs and their next-token labels), each starting where
    the last one's labels ended; the stream wraps round to fill the last one. Any per-token
    sequence packs the same way (answer flags line up with their tokens)."""
    if not stream:
        raise InvalidValueError("the dataset has no rows to train on", field="training_config.data_config.dataset_id")
    count = max(1, -(-(len(stream) - 1) // window))
    need = count * window + 1
    cyclic = list(stream) * (-(-need // len(stream)))
    return [cyclic[i * window:(i + 1) * window + 1] for i in range(count)]


def _opening(engine: ChatEngine, message: dict[str, str], through: str) -> str:
    """What a template writes before a first message that is the assistant's (many cannot render
    an empty chat with a generation prompt): the part the same turn left empty shares with it."""
    empty = engine.render_chat([{**message, "content": ""}], add_generation_prompt=False)
    return os.path.commonprefix([empty, through])


@dataclass(frozen=True)
class Window:
    """`window + 1` tokens; `answer` flags each label (tokens[1:]) that counts, None: all count."""

    tokens: list[int]
    answer: list[bool] | None = None


async def make_windows(engine: ChatEngine, rows: Sequence[dict[str, Any]], data_format: DataFormat, window: int,
                       *, train_on_input: bool) -> list[Window]:
    """The rows packed into windows; answer-only, a window without an answer label is dropped
    (it would give no gradient and no loss)."""
    if train_on_input:
        return [Window(tokens) for tokens in pack(await tokenize_rows(engine, rows, data_format), window)]
    stream, answer = await tokenize_answers(engine, rows, data_format)
    if not any(answer):
        raise InvalidValueError("the dataset has no answer (assistant) tokens to train on with train_on_input "
                                "false", field="training_config.data_config.train_on_input")
    packed = (Window(tokens, flags[1:]) for tokens, flags in zip(pack(stream, window), pack(answer, window),
                                                                  strict=True))
    return [w for w in packed if any(w.answer or ())]
