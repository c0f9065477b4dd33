"""What handlers see of an inference engine: two Protocols and the plain data they exchange.

Handlers import only this module. The llama.cpp worker (`llamacpp.py`) and the optional
ctransformers engine implement these Protocols; the registry hands out whichever a model uses.
Every number crossing this boundary is a plain Python int/float (never numpy), so handlers
can put them straight into JSON.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ggstack.core.errors import InvalidValueError

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingOptions:
    """How to pick tokens. Defaults follow llama.cpp; `None` means "not asked for".

    `logprobs` is the number of top alternatives to report per token (0 = only the chosen
    token's logprob, None = no logprobs). `json_schema` is turned into a grammar by the engine;
    giving both `grammar` and `json_schema` is an error. `logit_bias` adds a value in
    [-100, 100] to a token id's logit before sampling (the llama.cpp engine only).
    """

    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    logit_bias: dict[int, float] | None = None

    def __post_init__(self) -> None:
        validate_sampling(self)


MAX_TOP_LOGPROBS = 20


def validate_sampling(o: SamplingOptions) -> None:
    """Reject impossible values with the field named, before any engine sees them."""
    checks: list[tuple[bool, str, str]] = [
        (o.max_tokens is None or o.max_tokens >= 1, "max_tokens", "must be at least 1"),
        (o.temperature >= 0.0, "temperature", "must not be negative"),
        (0.0 <= o.top_p <= 1.0, "top_p", "must be between 0 and 1"),
        (o.top_k >= 0, "top_k", "must not be negative (0 disables it)"),
        (0.0 <= o.min_p <= 1.0, "min_p", "must be between 0 and 1"),
        (o.repeat_penalty > 0.0, "repeat_penalty", "must be positive"),
        (-2.0 <= o.presence_penalty <= 2.0, "presence_penalty", "must be between -2 and 2"),
        (-2.0 <= o.frequency_penalty <= 2.0, "frequency_penalty", "must be between -2 and 2"),
        (o.seed is None or 0 <= o.seed < 2**32 - 1, "seed", "must be between 0 and 2**32-2"),
        (all(isinstance(s, str) and s for s in o.stop), "stop", "must be non-empty strings"),
        (o.logprobs is None or 0 <= o.logprobs <= MAX_TOP_LOGPROBS, "logprobs",
         f"must be between 0 and {MAX_TOP_LOGPROBS}"),
        (o.grammar is None or o.json_schema is None, "grammar", "cannot be combined with a JSON schema"),
        (not o.logit_bias or all(isinstance(t, int) and -100 <= b <= 100 for t, b in o.logit_bias.items()),
         "logit_bias", "maps token ids to values between -100 and 100"),
    ]
    for ok, param, message in checks:
        if not ok:
            raise InvalidValueError(f"{param} {message}", field=param)


@dataclass(frozen=True)
class TokenEvent:
    """One generated token's worth of output text (may be "" while a UTF-8 character is split)."""

    text: str
    token_id: int
    logprob: float | None = None
    top_logprobs: list[tuple[str, float]] | None = None


@dataclass(frozen=True)
class Finish:
    """The last item of every generation stream."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class EngineLoad:
    """How busy a chat model is right now (read without stopping its thread, so approximate)."""

    slots: int
    busy: int
    queued: int


@runtime_checkable
class ChatEngine(Protocol):
    """A loaded text-generation model."""

    context_length: int

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids for `text`, as the model would see it in a prompt."""
        ...

    async def detokenize(self, tokens: list[int]) -> str:
        """Text for token ids (invalid UTF-8 is replaced, never raised)."""
        ...

    def render_chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                    add_generation_prompt: bool = True) -> str:
        """The prompt text the model's own chat template makes of `messages`.

        Raises InvalidValueError if the model has no chat template or the template rejects the messages.
        """
        ...

    def generate(self, prompt: str | list[int], options: SamplingOptions) -> AsyncGenerator[TokenEvent | Finish, None]:
        """Stream tokens, ending with exactly one `Finish`.

        Errors found before any token is produced (prompt longer than the context,
        a bad grammar, a full queue) are raised by the first `__anext__`, so a caller that
        pulls the first item before answering can still send a proper status. Closing the
        iterator (aclose, task cancellation) stops the model within a token or two.
        """
        ...


@runtime_checkable
class EmbeddingEngine(Protocol):
    """A loaded embedding model."""

    dimension: int
    context_length: int

    async def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        """L2-normalised vectors, one per input, and the total number of tokens embedded."""
        ...

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids for `text`; with `add_bos`, the special tokens the model adds around an input."""
        ...


@runtime_checkable
class RerankEngine(Protocol):
    """A loaded reranker (a cross-encoder: it reads the query and a document together)."""

    context_length: int

    async def score(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        """One relevance score per document (higher is more relevant), and the total tokens read."""
        ...
