"""Scoring functions: the built-in ones, those registered through the API, and how each is run.

A function is a `ScoringFn` record (the spec's shape) plus the implementation that scores its
rows, chosen by name for the built-ins and, for registered ones, by their params' type
(`llm_as_judge`, `regex_parser`) or by `provider_scoring_fn_id` naming a built-in (`equality`,
`basic::subset_of`, ...). Registered functions live in the metadata store (kind
"scoring_function"); the built-ins are code and cannot be unregistered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ggstack.core.errors import AlreadyExistsError, InvalidValueError, NotFoundError, UnknownIdError
from ggstack.scoring import basic
from ggstack.scoring.ifeval import ifeval
from ggstack.scoring.judge import DEFAULT_REGEXES, DEFAULT_TEMPLATE

KIND = "scoring_function"
NUMBER = {"type": "number"}

RowScorer = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Implementation:
    """How rows are scored: `scorer` is None for the LLM judge (it needs a model, see judge.py).
    `params_type` is the ScoringFnParams type it reads beyond aggregation_functions."""

    name: str
    scorer: RowScorer | None
    params_type: str = "basic"


IMPLEMENTATIONS = {impl.name: impl for impl in (
    Implementation("equality", basic.equality),
    Implementation("subset-of", basic.subset_of),
    Implementation("regex-parser-multiple-choice-answer", basic.regex_parser, "regex_parser"),
    Implementation("regex-parser-math-response", basic.math_response, "regex_parser"),
    Implementation("docvqa", basic.docvqa),
    Implementation("ifeval", ifeval),
    Implementation("llm-as-judge-base", None, "llm_as_judge"),
)}


def _builtin(identifier: str, description: str, params: dict[str, Any]) -> dict[str, Any]:
    provider, _, name = identifier.partition("::")
    resource = name.replace("_", "-") if provider == "basic" else "llm-as-judge-base"
    return {"identifier": identifier, "provider_resource_id": resource, "provider_id": provider,
            "type": "scoring_function", "description": description, "metadata": {}, "return_type": NUMBER,
            "params": params}


def _basic(*aggregations: str) -> dict[str, Any]:
    return {"type": "basic", "aggregation_functions": list(aggregations)}


#: The reference server's identifiers, providers, params and default aggregations.
BUILTINS: dict[str, dict[str, Any]] = {fn["identifier"]: fn for fn in (
    _builtin("basic::equality", "1.0 when generated_answer equals expected_answer, else 0.0.", _basic("accuracy")),
    _builtin("basic::subset_of", "1.0 when expected_answer is contained in generated_answer, else 0.0.",
             _basic("accuracy")),
    _builtin("basic::regex_parser_multiple_choice_answer",
             "Reads the answer letter after 'Answer:' (or its equivalent in several languages) in "
             "generated_answer and compares it with expected_answer.",
             {"type": "regex_parser", "parsing_regexes": basic.MULTIPLE_CHOICE_REGEXES,
              "aggregation_functions": ["accuracy"]}),
    _builtin("basic::regex_parser_math_response",
             "Reads the final answer ($\\boxed{...}$) of a math solution and compares it with expected_answer "
             "after normalising LaTeX and numbers.",
             {"type": "regex_parser", "parsing_regexes": basic.MATH_REGEXES, "aggregation_functions": ["accuracy"]}),
    _builtin("basic::docvqa", "1.0 when the normalised generated_answer equals one of the accepted answers "
             "in expected_answer (a JSON list), as DocVQA scores.", _basic("accuracy")),
    _builtin("basic::ifeval", "The share of a row's IFEval instructions the generation follows, weighted by "
             "how many there are (the checks that need no downloaded data).", _basic("weighted_average")),
    _builtin("llm-as-judge::base", "A registered LLM rates generated_answer against expected_answer for "
             "input_query; judge_score_regexes read the rating.",
             {"type": "llm_as_judge", "judge_model": "meta-llama/Llama-3.1-405B-Instruct",
              "prompt_template": DEFAULT_TEMPLATE, "judge_score_regexes": DEFAULT_REGEXES,
              "aggregation_functions": []}),
)}

PROVIDERS = ("basic", "llm-as-judge")


def implementation_of(fn: Mapping[str, Any]) -> Implementation:
    """Built-ins by their resource id; registered functions by params type or the built-in they name."""
    params_type = (fn.get("params") or {}).get("type")
    if params_type == "llm_as_judge":
        return IMPLEMENTATIONS["llm-as-judge-base"]
    named = str(fn.get("provider_resource_id") or "")
    builtin = BUILTINS.get(named)
    resource = builtin["provider_resource_id"] if builtin else named
    if resource in IMPLEMENTATIONS and IMPLEMENTATIONS[resource].params_type != "llm_as_judge":
        return IMPLEMENTATIONS[resource]
    if params_type == "regex_parser":
        return IMPLEMENTATIONS["regex-parser-multiple-choice-answer"]
    raise InvalidValueError(
        "a scoring function needs llm_as_judge or regex_parser params, or provider_scoring_fn_id naming "
        f"a built-in basic function ({', '.join(f for f in BUILTINS if f.startswith('basic::'))})",
        field="provider_scoring_fn_id")


def _builtin_params(fn: Mapping[str, Any]) -> dict[str, Any]:
    """A function registered on a built-in without params of its own runs with the built-in's."""
    resource = str(fn.get("provider_resource_id") or "")
    for builtin in BUILTINS.values():
        if resource in (builtin["identifier"], builtin["provider_resource_id"]):
            return builtin["params"]
    return _basic()


def effective_params(fn: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Params given with a request replace the function's own; `basic` params given to a regex or
    judge function change only its aggregation functions."""
    own = dict(fn.get("params") or _builtin_params(fn))
    if not given:
        return own
    needed = implementation_of(fn).params_type
    if given.get("type") == needed or needed == "basic":
        return dict(given)
    if given.get("type") == "basic":
        return {**own, "aggregation_functions": list(given.get("aggregation_functions") or [])}
    raise InvalidValueError(f"scoring function '{fn['identifier']}' takes {needed} or basic params, "
                            f"not {given.get('type')}", field="scoring_functions")


class ScoringFunctions:
    """The built-ins plus those registered in the metadata store."""

    def __init__(self, metadata: Any) -> None:
        self._metadata = metadata

    async def list(self) -> list[dict[str, Any]]:
        registered = (await self._metadata.list(KIND, limit=None, order="asc")).items
        return [*BUILTINS.values(), *registered]

    async def get(self, identifier: str) -> dict[str, Any]:
        fn = BUILTINS.get(identifier) or await self._metadata.get(KIND, identifier)
        if fn is None:
            raise NotFoundError(f"Scoring function '{identifier}' not found", kind=KIND, identifier=identifier)
        return fn

    async def for_use(self, identifier: str) -> dict[str, Any]:
        """A function named in a request body: unknown is 'Invalid value', as the reference answers."""
        try:
            return await self.get(identifier)
        except NotFoundError:
            raise UnknownIdError(f"Scoring function '{identifier}' not found", field="scoring_functions") from None

    async def register(self, identifier: str, *, description: str, return_type: dict[str, Any],
                       provider_scoring_fn_id: str | None = None, provider_id: str | None = None,
                       params: dict[str, Any] | None = None) -> dict[str, Any]:
        if not identifier:
            raise InvalidValueError("scoring_fn_id must not be empty", field="scoring_fn_id")
        if provider_id is not None and provider_id not in PROVIDERS:
            raise UnknownIdError(f"provider_id '{provider_id}' is not a scoring provider here; use one of "
                                 f"{', '.join(PROVIDERS)}", field="provider_id")
        fn = {"identifier": identifier, "provider_resource_id": provider_scoring_fn_id or identifier,
              "provider_id": provider_id, "type": "scoring_function", "description": description,
              "metadata": {}, "return_type": return_type}
        if params is not None:
            fn["params"] = params
        impl = implementation_of(fn)
        fn["provider_id"] = provider_id or ("llm-as-judge" if impl.params_type == "llm_as_judge" else "basic")
        if identifier in BUILTINS or await self._metadata.get(KIND, identifier) is not None:
            raise AlreadyExistsError(f"Scoring function '{identifier}' already exists")
        await self._metadata.put(KIND, identifier, fn)
        return fn

    async def unregister(self, identifier: str) -> None:
        if identifier in BUILTINS:
            raise InvalidValueError(f"'{identifier}' is built in and cannot be unregistered", field="scoring_fn_id")
        await self.get(identifier)
        await self._metadata.delete(KIND, identifier)
