"""Generation events -> a response's output items and its stream events (plain dicts).

Whole and streamed answers go through the same builder (a whole answer just drops the
events), so both always agree. Output follows the model: text opens a `message` item,
each tool call is a `function_call` item, and text after a call opens a new message.

Shapes are the spec's (Llama Stack 0.2.23, with OpenAI's in_progress and failed events
from the overlay), which differ from OpenAI's in small ways: `response.created` and
`response.completed` carry no `sequence_number`, content-part events
no indexes, and an item announced by `output_item.added` never has an empty content
list (the spec's `oneOf` could not tell input from output content), so a new message
starts with one empty `output_text` part.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ggstack.core.ids import new_id
from ggstack.inference.generation import (
    ChoiceFinished,
    ChoiceStarted,
    Event,
    Finished,
    TextDelta,
    ToolCallDelta,
)
from ggstack.inference.tools import ToolCall


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def function_call_item(call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": new_id("fc_"), "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": status}


class ResponseBuilder:
    """Builds one response from one choice's events.

    `head` holds the response's fixed fields (id, created_at, model, text, ...); `prelude`
    items (file search calls, done before generation) come first in the output.
    """

    def __init__(self, head: Mapping[str, Any], prelude: Sequence[Mapping[str, Any]] = ()) -> None:
        self._head = dict(head)
        self._prelude = [dict(item) for item in prelude]
        self.output: list[dict[str, Any]] = []
        self.status = "in_progress"
        self._sequence = 0
        self._message: int | None = None  # output index of the message being written

    def response(self) -> dict[str, Any]:
        """The response object as it stands (a copy: later events do not change it)."""
        return {**copy.deepcopy(self._head), "object": "response", "status": self.status,
                "output": copy.deepcopy(self.output)}

    def opening(self) -> list[dict[str, Any]]:
        """response.created and response.in_progress: sent as soon as the request is accepted,
        before the prompt is processed, so a client sees its response at once."""
        return [{"type": "response.created", "response": self.response()},
                self._event("response.in_progress", response=self.response())]

    def failed(self, code: str, message: str) -> dict[str, Any]:
        """The last event of a stream that broke after it opened."""
        self.status = "failed"
        self._head["error"] = {"code": code, "message": message}
        return self._event("response.failed", response=self.response())

    def events(self, event: Event) -> list[dict[str, Any]]:
        """The stream events for one generation event."""
        if isinstance(event, ChoiceStarted):
            out = []
            for item in self._prelude:
                out += self._whole_item(item, {**item, "status": "in_progress", "results": None})
            return out
        if isinstance(event, TextDelta):
            return self._text(event.text) if event.text else []
        if isinstance(event, ToolCallDelta):
            return self._close_message("completed") + self._call(event.call)
        if isinstance(event, ChoiceFinished):
            done = "incomplete" if event.finish_reason == "length" else "completed"
            out = []
            if not any(item["type"] in ("message", "function_call") for item in self.output):
                out += self._open_message()  # nothing said and nothing called: an empty answer
            out += self._close_message(done)
            self.status = done
            return out
        if isinstance(event, Finished):
            return [{"type": "response.completed", "response": self.response()}]
        return []

    # -- items -------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return event

    def _added(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return self._event("response.output_item.added", response_id=self._head["id"], item=copy.deepcopy(item),
                           output_index=len(self.output) - 1)

    def _done(self, index: int) -> dict[str, Any]:
        return self._event("response.output_item.done", response_id=self._head["id"],
                           item=copy.deepcopy(self.output[index]), output_index=index)

    def _whole_item(self, item: Mapping[str, Any], announced: Mapping[str, Any]) -> list[dict[str, Any]]:
        """An item that is finished when it is added (`announced` is how it is first shown)."""
        self.output.append(dict(item))
        shown = {k: v for k, v in announced.items() if v is not None}
        return [self._added(shown), self._done(len(self.output) - 1)]

    def _call(self, call: ToolCall) -> list[dict[str, Any]]:
        item = function_call_item(call)
        self.output.append(item)
        index = len(self.output) - 1
        return [self._added({**item, "arguments": "", "status": "in_progress"}),
                self._event("response.function_call_arguments.delta", delta=call.arguments, item_id=item["id"],
                            output_index=index),
                self._event("response.function_call_arguments.done", arguments=call.arguments,
                            item_id=item["id"], output_index=index),
                self._done(index)]

    def _open_message(self) -> list[dict[str, Any]]:
        item = {"type": "message", "id": new_id("msg_"), "role": "assistant", "status": "in_progress",
                "content": [output_text("")]}
        self.output.append(item)
        self._message = len(self.output) - 1
        return [self._added(item),
                self._event("response.content_part.added", response_id=self._head["id"], item_id=item["id"],
                            part={"type": "output_text", "text": ""})]

    def _text(self, text: str) -> list[dict[str, Any]]:
        out = self._open_message() if self._message is None else []
        assert self._message is not None  # _open_message sets it
        item = self.output[self._message]
        item["content"][0]["text"] += text
        out.append(self._event("response.output_text.delta", content_index=0, delta=text, item_id=item["id"],
                               output_index=self._message))
        return out

    def _close_message(self, status: str) -> list[dict[str, Any]]:
        if self._message is None:
            return []
        index, self._message = self._message, None
        item = self.output[index]
        item["status"] = status
        text = item["content"][0]["text"]
        return [self._event("response.output_text.done", content_index=0, text=text, item_id=item["id"],
                            output_index=index),
                self._event("response.content_part.done", response_id=self._head["id"], item_id=item["id"],
                            part={"type": "output_text", "text": text}),
                self._done(index)]
