"""The stable overlay declares the registrations the server refuses for fixed reasons (if/then
on the request schemas): which registered scoring functions can run, which tool groups each
tool provider takes. The schema and the code behind it must agree."""

from __future__ import annotations

import itertools

from ggstack.core.errors import InvalidValueError
from ggstack.http import schemas
from ggstack.scoring.functions import BUILTINS, IMPLEMENTATIONS, implementation_of


def schema_accepts(request: dict, schema: str = "RegisterScoringFunctionRequest") -> bool:
    validator = schemas.validator("llama-stack-stable", f"#/components/schemas/{schema}")
    return schemas.first_problem(validator, request) is None


def server_accepts(request: dict) -> bool:
    fn = {"identifier": request["scoring_fn_id"], "params": request.get("params"),
          "provider_resource_id": request.get("provider_scoring_fn_id") or request["scoring_fn_id"]}
    try:
        implementation_of(fn)
    except InvalidValueError:
        return False
    return True


def test_the_declared_names_are_the_built_in_basic_functions() -> None:
    request = {"scoring_fn_id": "f", "description": "", "return_type": {"type": "number"}}
    runnable = {name for name in [*BUILTINS, *IMPLEMENTATIONS]
                if schema_accepts({**request, "provider_scoring_fn_id": name})}
    assert runnable == {name for name in [*BUILTINS, *IMPLEMENTATIONS]
                        if server_accepts({**request, "provider_scoring_fn_id": name})}
    assert "basic::equality" in runnable and "llm-as-judge::base" not in runnable


PARAMS = [None, {"type": "basic", "aggregation_functions": []},
          {"type": "regex_parser", "parsing_regexes": [], "aggregation_functions": []},
          {"type": "llm_as_judge", "judge_model": "m", "judge_score_regexes": [], "aggregation_functions": []}]
NAMES = [None, "", "equality", "basic::subset_of", "llm-as-judge::base", "llm-as-judge-base", "mine"]


def test_schema_and_server_agree_on_every_combination() -> None:
    for params, provider_fn, fn_id in itertools.product(PARAMS, NAMES, ["mine", "docvqa"]):
        request = {"scoring_fn_id": fn_id, "description": "", "return_type": {"type": "number"},
                   "provider_scoring_fn_id": provider_fn, "params": params}
        assert schema_accepts(request) == server_accepts(request), request


def test_tool_groups_each_provider_takes() -> None:
    def accepts(**request: object) -> bool:
        return schema_accepts(request, "RegisterToolGroupRequest")

    assert accepts(toolgroup_id="builtin::rag", provider_id="rag-runtime")  # then a 409: it is built in
    assert not accepts(toolgroup_id="mine", provider_id="rag-runtime")
    assert accepts(toolgroup_id="m", provider_id="model-context-protocol", mcp_endpoint={"uri": "http://h:1/mcp"})
    assert not accepts(toolgroup_id="m", provider_id="model-context-protocol")
    assert not accepts(toolgroup_id="m", provider_id="model-context-protocol", mcp_endpoint={"uri": "ftp://h"})
    assert accepts(toolgroup_id="w", provider_id="tavily-search") and accepts(toolgroup_id="w", provider_id="x")
    assert not accepts(toolgroup_id="w", provider_id="tavily-search", mcp_endpoint={"uri": "http://h"})
