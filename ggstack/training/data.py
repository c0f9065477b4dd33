"""Dataset rows to training windows: each row becomes a chat, rendered by the model's own
template and tokenized by the model's vocabulary, and the token streams are packed end to end.

Packing is the only layout: llama.cpp's trainer takes fixed windows of `n_ctx` tokens and puts
a label on every position, so padding short rows would train the model on padding. A stream
shorter than one window, or a last partial window, is completed by wrapping round to the start.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import ChatEngine

DataFormat = Literal["instruct", "dialog"]
#: The reference's instruct columns, then the plain names the issue calls them by.
INPUT_COLUMNS = ("input_query", "input")
OUTPUT_COLUMNS = ("expected_answer", "output")
DIALOG_COLUMNS = ("dialog", "messages")
ROLES = ("system", "user", "assistant")


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


def pack(stream: Sequence[int], window: int) -> list[list[int]]:
    """Windows of `window + 1` tokens (inputs and their next-token labels), each starting where
    the last one's labels ended; the stream wraps round to fill the last one."""
    if not stream:
        raise InvalidValueError("the dataset has no rows to train on", field="training_config.data_config.dataset_id")
    count = max(1, -(-(len(stream) - 1) // window))
    need = count * window + 1
    cyclic = list(stream) * (-(-need // len(stream)))
    return [cyclic[i * window:(i + 1) * window + 1] for i in range(count)]
