"""Schemathesis against a real uvicorn server, one parametrized test per operation of every spec.

Every default check runs (no 5xx, status codes, content types, headers and bodies as the spec
declares, invalid input rejected). 501 answers are allowed only for operations that have no
handler yet; `test_report_unimplemented` prints that list so it can only shrink.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from hypothesis import HealthCheck, settings

from generated.routes import OPERATIONS
from tests.contract.checks import base_url, check_response, spec_for, unimplemented
from tests.server import Server

MAX_EXAMPLES = int(os.environ.get("GGSTACK_FUZZ_EXAMPLES", "12"))


def run_case(case, server: Server, spec: str) -> None:
    response = case.call(base_url=base_url(spec, server))
    check_response(case, response, server, lambda **options: case.validate_response(response, **options))


# Derandomized by default so a CI run checks the same cases every time; GGSTACK_FUZZ_RANDOM=1
# (with GGSTACK_FUZZ_EXAMPLES=200, say) explores new ones, as `nox -s fuzz -- ...` is for.
fuzz = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                derandomize=not os.environ.get("GGSTACK_FUZZ_RANDOM"))

llama_stack_stable = spec_for("llama-stack-stable")
llama_stack_experimental = spec_for("llama-stack-experimental")
llama_stack = spec_for("llama-stack-deprecated")
llama_stack_inference = spec_for("llama-stack-inference")
dell = spec_for("dell-pro-ai-studio")


@llama_stack_stable.parametrize()
@fuzz
def test_llama_stack_stable(case, contract_server: Server) -> None:
    run_case(case, contract_server, "llama-stack-stable")


@llama_stack_experimental.parametrize()
@fuzz
def test_llama_stack_experimental(case, contract_server: Server) -> None:
    run_case(case, contract_server, "llama-stack-experimental")


@llama_stack.parametrize()
@fuzz
def test_llama_stack(case, contract_server: Server) -> None:
    run_case(case, contract_server, "llama-stack-deprecated")


@llama_stack_inference.parametrize()
@fuzz
def test_llama_stack_inference(case, contract_server: Server) -> None:
    run_case(case, contract_server, "llama-stack-inference")


@dell.parametrize()
@fuzz
def test_dell(case, contract_server: Server) -> None:
    run_case(case, contract_server, "dell-pro-ai-studio")


def test_report_unimplemented(contract_server: Server) -> None:
    """Not a pass/fail on the count: it prints the gap list, and checks each one really answers 501."""
    missing = sorted(unimplemented(contract_server))
    by_id = {op.operation_id: op for op in OPERATIONS}
    for operation_id in missing:
        op = by_id[operation_id]
        if op.body is not None or any(p.required for p in op.params):
            continue
        answer = httpx.request(op.method, contract_server.url + op.paths[0])
        assert answer.status_code == 501, f"{operation_id} is listed as missing but answered {answer.status_code}"
    print(f"\n{len(missing)} operations answer 501 (not implemented): {', '.join(missing)}")
    Path(contract_server.data_dir / "unimplemented.txt").write_text("\n".join(missing))
