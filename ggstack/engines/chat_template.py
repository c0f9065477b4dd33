"""A model's chat template, rendered with llama-cpp-python's Jinja formatter (both engines use it).

The formatter is built once per `add_generation_prompt` value and kept: compiling the
template is most of the cost of a render.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from ggstack.core.errors import InvalidValueError

if TYPE_CHECKING:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_types import ChatCompletionRequestMessage, ChatCompletionTool


class ChatTemplate:
    """The template of model `identifier` (None when the model has none: rendering is then a 400)."""

    def __init__(self, identifier: str, template: str | None, *, bos_text: str = "", eos_text: str = "") -> None:
        self.identifier = identifier
        self.template = template
        self._bos_text = bos_text
        self._eos_text = eos_text
        self._formatters: dict[bool, Jinja2ChatFormatter] = {}

    def render(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
               add_generation_prompt: bool = True) -> str:
        from jinja2 import TemplateError

        formatter = self._formatter(add_generation_prompt)
        # The messages and tools are plain dicts of the OpenAI shapes the formatter's TypedDicts describe.
        try:
            return formatter(messages=cast("list[ChatCompletionRequestMessage]", messages),
                             tools=cast("list[ChatCompletionTool] | None", tools)).prompt
        except (TemplateError, ValueError, TypeError, KeyError) as exc:
            # the template's own raise_exception() messages are written for the caller
            raise InvalidValueError(f"the chat template of model {self.identifier} rejected the messages: {exc}",
                                    field="messages") from None

    def _formatter(self, add_generation_prompt: bool) -> Jinja2ChatFormatter:
        if not self.template:
            raise InvalidValueError(f"model {self.identifier} has no chat template", field="model")
        from jinja2 import TemplateError
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = self._formatters.get(add_generation_prompt)
        if formatter is None:
            try:
                formatter = Jinja2ChatFormatter(self.template, self._eos_text, self._bos_text,
                                                add_generation_prompt=add_generation_prompt)
            except TemplateError:
                raise InvalidValueError(f"model {self.identifier} has a chat template that does not parse",
                                        field="model") from None
            self._formatters[add_generation_prompt] = formatter
        return formatter
