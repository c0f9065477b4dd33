"""What differs between the OpenAI-compatible servers ggstack forwards to.

All of them take OpenAI chat/completions/embeddings bodies. They differ in how constrained
decoding is asked for (vLLM's `guided_json` / `guided_grammar`, llama-server's `grammar`),
which llama.cpp-style sampling fields they accept (`top_k`, `min_p`, the repeat penalty),
how models are listed (Ollama: `/api/tags` plus `/api/show` for kind and sizes) and whether
the server tokenizes for us (`/tokenize` on vLLM and llama-server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ggstack.engines.base import SamplingOptions

#: SamplingOptions defaults: a value equal to one of these was not asked for, so it is not sent.
_DEFAULTS = SamplingOptions()


@dataclass(frozen=True)
class Flavour:
    name: str
    #: field for a JSON schema (None: OpenAI's response_format)
    json_schema_field: str | None = None
    #: field for a GBNF grammar (None: grammars are refused)
    grammar_field: str | None = None
    #: the repeat penalty's name, when top_k/min_p/repeat penalty are accepted at all
    repeat_penalty_field: str | None = None
    #: how /tokenize is asked ("vllm", "llama-server") or None when the server has none
    tokenizer: str | None = None
    #: list models through Ollama's native API
    ollama_listing: bool = False

    def sampling_fields(self, options: SamplingOptions, *, chat: bool) -> dict[str, Any]:
        """The request fields for `options` (without the schema/grammar, see `constraint_fields`)."""
        body: dict[str, Any] = {"temperature": options.temperature, "top_p": options.top_p}
        if options.max_tokens is not None:
            body["max_tokens"] = options.max_tokens
        for name in ("presence_penalty", "frequency_penalty", "seed"):
            value = getattr(options, name)
            if value is not None and value != getattr(_DEFAULTS, name):
                body[name] = value
        if options.stop:
            body["stop"] = list(options.stop)
        if options.logit_bias:
            body["logit_bias"] = {str(token): bias for token, bias in options.logit_bias.items()}
        if options.logprobs is not None:
            if chat:
                body["logprobs"] = True
                if options.logprobs:
                    body["top_logprobs"] = options.logprobs
            else:
                body["logprobs"] = options.logprobs
        if self.repeat_penalty_field is not None:
            if options.top_k != _DEFAULTS.top_k:
                body["top_k"] = options.top_k
            if options.min_p != _DEFAULTS.min_p:
                body["min_p"] = options.min_p
            if options.repeat_penalty != _DEFAULTS.repeat_penalty:
                body[self.repeat_penalty_field] = options.repeat_penalty
        return body

    def constraint_fields(self, options: SamplingOptions) -> dict[str, Any] | None:
        """The fields that constrain the output, {} for none, None when this server cannot take the grammar."""
        if options.json_schema is not None:
            if self.json_schema_field is not None:
                return {self.json_schema_field: options.json_schema}
            return {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "response", "schema": options.json_schema,
                                                        "strict": True}}}
        if options.grammar is not None:
            return {self.grammar_field: options.grammar} if self.grammar_field is not None else None
        return {}


FLAVOURS: dict[str, Flavour] = {
    "remote::openai-compatible": Flavour("openai-compatible"),
    "remote::vllm": Flavour("vllm", json_schema_field="guided_json", grammar_field="guided_grammar",
                            repeat_penalty_field="repetition_penalty", tokenizer="vllm"),
    "remote::llama-server": Flavour("llama-server", grammar_field="grammar", repeat_penalty_field="repeat_penalty",
                                    tokenizer="llama-server"),
    "remote::ollama": Flavour("ollama", ollama_listing=True),
}
