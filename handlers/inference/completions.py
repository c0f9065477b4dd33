"""OpenAI (legacy, raw-text) completions, whole and streamed.

Not in the spec's words: `max_tokens` defaults to 16, as OpenAI's does; `logprobs: true`
gives each generated token's logprob, and an integer 0-5 (OpenAI's form) also that many top
alternatives per token (echoed prompt tokens have none: the engine keeps logits for the last
position only); `suffix` (fill-in-the-middle) and `prompt_logprobs` are refused with a 400;
`logit_bias` works on llama.cpp models; `guided_choice` (vLLM's) is enforced by a grammar.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from generated.models.llama_stack_deprecated import (
    CompletionLogprobCount,
    OpenAICompletion,
    OpenAICompletionChoice,
    OpenaiCompletionRequest,
)
from ggstack.core.context import Context
from ggstack.core.errors import ContextOverflowError
from ggstack.core.ids import new_id, now
from ggstack.engines.base import ChatEngine
from ggstack.http.errors import Fields, InvalidRequest, naming_stream
from ggstack.inference import generation, options
from ggstack.inference.completions import choice_grammar, completion_prompts, pick_best
from ggstack.inference.generation import Prompt
from ggstack.inference.openai_format import OpenAICompletionChunks, completion, spec_dialect

DIALECT = spec_dialect(OpenAICompletion, OpenAICompletionChoice)
DEFAULT_MAX_TOKENS = 16
#: Prompts times best_of: each is a generation queued on one model worker.
MAX_GENERATIONS = 128
#: An overflow is about the `prompt` (chat handlers call the same thing `messages`).
COMPLETION_FIELDS: Fields = {ContextOverflowError: "prompt"}


async def openai_completion(body: OpenaiCompletionRequest, ctx: Context) -> dict | AsyncIterator[dict]:
    engine = await ctx.models.chat(body.model)
    refused = [("suffix", body.suffix, "fill-in-the-middle (suffix) is not supported by the local engines"),
               ("prompt_logprobs", body.prompt_logprobs, "prompt_logprobs is not supported by the local engines")]
    for param, value, message in refused:
        if value is not None:
            raise InvalidRequest(message, param=param)
    prompts = completion_prompts(body.prompt)
    n = options.choice_count(body.n)
    best_of = options.choice_count(body.best_of if body.best_of is not None else n, param="best_of")
    if best_of < n:
        raise InvalidRequest("best_of must be at least n", param="best_of")
    if best_of > n and body.stream:
        raise InvalidRequest("best_of cannot be used with stream", param="best_of")
    if len(prompts) * best_of > MAX_GENERATIONS:
        raise InvalidRequest(f"{len(prompts)} prompts x best_of {best_of} is more than the {MAX_GENERATIONS} "
                             "generations one request may ask for", param="prompt")
    sampling = options.sampling_options(
        max_tokens=options.token_limit(("max_tokens", body.max_tokens)) or DEFAULT_MAX_TOKENS,
        temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stop,
        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
        logprobs=top_logprobs(body.logprobs, ranked=best_of > n), logit_bias=body.logit_bias,
        grammar=choice_grammar(body.guided_choice) if body.guided_choice is not None else None)
    echo = await _echo_texts(engine, prompts) if body.echo else None
    completion_id, created = new_id("cmpl-"), now()
    logprobs = body.logprobs is not None and body.logprobs is not False
    events = naming_stream(generation.generate_events(engine, prompts, sampling, n=best_of), COMPLETION_FIELDS)
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        chunks = OpenAICompletionChunks(id=completion_id, created=created, model=body.model, logprobs=logprobs,
                                        echo=echo, n=n, include_usage=include_usage, dialect=DIALECT)
        return generation.shaped_stream(events, chunks.chunks)
    result = await generation.collect(events)
    if best_of > n:
        result = pick_best(result, n=n, best_of=best_of)
    return completion(result, id=completion_id, created=created, model=body.model, logprobs=logprobs, echo=echo,
                      n=n, dialect=DIALECT)


def top_logprobs(requested: bool | CompletionLogprobCount | None, *, ranked: bool) -> int | None:
    """The engine's top-logprob count: `true` is 0 alternatives, an integer that many; best_of
    needs the chosen tokens' logprobs to rank its samples even when the client asked for none."""
    if requested is None or requested is False:
        return 0 if ranked else None
    return 0 if requested is True else requested.root


async def _echo_texts(engine: ChatEngine, prompts: list[Prompt]) -> list[str]:
    return [p if isinstance(p, str) else await engine.detokenize(p) for p in prompts]
