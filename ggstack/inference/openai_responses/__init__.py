"""The OpenAI-compatible Responses API on the shared generation layer.

A create request is read into a conversation and tools (`items`), searched for `file_search`
tools (`file_search`), planned and generated like a chat completion (`prompt.plan_chat`,
`generation.generate_events`), and the generation events become output items and stream
events (`output.ResponseBuilder`). Stored responses keep the whole conversation they answered
(`stored`), so `previous_response_id` continues from it as Llama Stack does.
"""

from ggstack.inference.openai_responses.output import ResponseBuilder

__all__ = ["ResponseBuilder"]
