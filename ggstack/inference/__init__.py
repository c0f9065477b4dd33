"""The generation layer every text-generation API shares (OpenAI, legacy Llama Stack, Dell).

A handler maps its request onto these pieces, then shapes the result in its own format:

1. `options.sampling_options(...)` (plus `token_limit`, `top_logprobs_count`, `choice_count`,
   `response_format_schema`) -> `SamplingOptions`.
2. chat: `messages.openai_messages(...)` (or build `Message`s), `tools.openai_tools(...)` /
   `openai_tool_choice(...)` (or build `ToolSpec`/`ToolChoice`), then
   `prompt.plan_chat(engine, messages, options, tools=..., tool_choice=...)` -> `ChatPlan`
   (prompt text, final options, output parser per choice).
3. `generation.generate_events(engine, [plan.prompt], plan.options, n=..., parser=plan.parser,
   parallel_tool_calls=...)` streams neutral events (ChoiceStarted, TextDelta, ToolCallDelta,
   ChoiceFinished, Finished); `collect(events)` / `generate(...)` make a whole `Generation`, and
   `shaped_stream(events, shape, on_finished)` turns them into API chunks while collecting.
4. Shape: `openai_format` for OpenAI bodies and chunks (`Dialect` per spec), `logprobs` for
   token logprobs, `stored` for the chat-completion store.
"""

from ggstack.inference.generation import (
    Choice,
    ChoiceFinished,
    ChoiceStarted,
    Collector,
    Event,
    Finished,
    Generation,
    TextDelta,
    ToolCallDelta,
    Usage,
    collect,
    generate,
    generate_events,
    shaped_stream,
)
from ggstack.inference.messages import Message, openai_messages
from ggstack.inference.prompt import ChatPlan, plan_chat
from ggstack.inference.tools import ToolCall, ToolChoice, ToolSpec

__all__ = [
    "ChatPlan",
    "Choice",
    "ChoiceFinished",
    "ChoiceStarted",
    "Collector",
    "Event",
    "Finished",
    "Generation",
    "Message",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolSpec",
    "Usage",
    "collect",
    "generate",
    "generate_events",
    "openai_messages",
    "plan_chat",
    "shaped_stream",
]
