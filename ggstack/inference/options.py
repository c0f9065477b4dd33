"""Request fields -> `SamplingOptions`, with OpenAI's ranges and field names in the errors.

Fields the client did not send keep the engine's defaults (llama.cpp's, as llama-cpp-python's
own server does), so "not passed" is never confused with a falsy value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import MAX_TOP_LOGPROBS, SamplingOptions

#: Seeds are taken modulo this (llama.cpp's seed is a uint32 and UINT32_MAX means "random").
SEED_MODULUS = 2**32 - 1
#: More choices than this per request would hold a model's only worker for too long.
MAX_CHOICES = 16
MAX_TEMPERATURE = 2.0


def stop_list(stop: str | Sequence[str] | None) -> list[str]:
    """`stop` as a list; empty strings are dropped (they would stop before the first token)."""
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else list(stop)
    return [s for s in items if s]


def choice_count(n: int | None, *, param: str = "n") -> int:
    if n is None:
        return 1
    if not 1 <= n <= MAX_CHOICES:
        raise InvalidValueError(f"{param} must be between 1 and {MAX_CHOICES}", field=param)
    return n


def token_limit(*candidates: tuple[str, int | None]) -> int | None:
    """The first limit given, e.g. `("max_completion_tokens", x), ("max_tokens", y)`; each must be >= 1."""
    for param, value in candidates:
        if value is not None:
            if value < 1:
                raise InvalidValueError(f"{param} must be at least 1", field=param)
            return value
    return None


def top_logprobs_count(logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """OpenAI chat: `logprobs` switches them on, `top_logprobs` (0-20) asks for alternatives."""
    if top_logprobs is not None:
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidValueError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", field="top_logprobs")
        if not logprobs:
            raise InvalidValueError("top_logprobs needs logprobs set to true", field="top_logprobs")
    if not logprobs:
        return None
    return top_logprobs or 0


def token_biases(logit_bias: Mapping[str, float]) -> dict[int, float]:
    """OpenAI's logit_bias (token ids as JSON object keys) as the engine's {token id: bias}."""
    try:
        return {int(token): float(bias) for token, bias in logit_bias.items()}
    except (TypeError, ValueError):
        raise InvalidValueError("logit_bias keys must be token ids and its values numbers",
                                field="logit_bias") from None


def sampling_options(*, max_tokens: int | None = None, temperature: float | None = None,
                     top_p: float | None = None, top_k: int | None = None, min_p: float | None = None,
                     repeat_penalty: float | None = None, presence_penalty: float | None = None,
                     frequency_penalty: float | None = None, seed: int | None = None,
                     stop: str | Sequence[str] | None = None, logprobs: int | None = None,
                     json_schema: Mapping[str, Any] | None = None, grammar: str | None = None,
                     logit_bias: Mapping[str, float] | None = None) -> SamplingOptions:
    """Options from request values; None means "use the default". Errors name the OpenAI field."""
    if temperature is not None and not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidValueError(f"temperature must be between 0 and {MAX_TEMPERATURE:g}", field="temperature")
    given: dict[str, Any] = {
        "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p,
        "repeat_penalty": repeat_penalty, "presence_penalty": presence_penalty,
        "frequency_penalty": frequency_penalty, "logprobs": logprobs, "grammar": grammar,
        "seed": None if seed is None else seed % SEED_MODULUS,
        "json_schema": dict(json_schema) if json_schema is not None else None,
        "logit_bias": token_biases(logit_bias) if logit_bias else None,
    }
    return SamplingOptions(stop=stop_list(stop), **{k: v for k, v in given.items() if v is not None})


def for_choice(options: SamplingOptions, sample: int) -> SamplingOptions:
    """The options of the `sample`-th choice for one prompt: a given seed is offset, so
    n choices differ (as OpenAI's do) yet the whole request stays reproducible."""
    if sample == 0 or options.seed is None:
        return options
    return replace(options, seed=(options.seed + sample) % SEED_MODULUS)


def response_format_schema(response_format: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI `response_format` -> the JSON schema to enforce (None for text).

    `json_object` is any JSON object; `json_schema` is its schema, always enforced (the engine
    makes a grammar of it), whatever `strict` says.
    """
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema")
        if schema is None:
            return {"type": "object"}
        if not isinstance(schema, Mapping):
            raise InvalidValueError("response_format.json_schema.schema must be a JSON schema object",
                                    field="response_format")
        return dict(schema)
    raise InvalidValueError(f"response_format type {kind!r} is not one of text, json_object, json_schema",
                            field="response_format")
